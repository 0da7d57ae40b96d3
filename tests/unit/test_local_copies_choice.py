"""Which processes keep local copies of Redis values (``redis_local_cache``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bastion.services import _local_copies
from bastion.settings import Settings
from bastion.stores.redis import create_redis_client


def settings(tmp_path: Path, url: str, **extra: Any) -> Settings:
    return Settings(env="test", data_dir=tmp_path, redis_url=url, redis_prefix="p", **extra)


async def test_sessions_and_cache_on_redis_are_copied_but_never_the_limits(
    tmp_path: Path,
) -> None:
    chosen = settings(tmp_path, "redis://127.0.0.1:6379/0")
    client = create_redis_client(chosen.redis_url)
    try:
        copies = _local_copies(chosen, client)
        assert copies is not None
        assert set(copies.prefixes) == {"p:session:s:", "p:cache:"}
        assert not copies.covers("p:ratelimit:login:alice")
    finally:
        await client.aclose()


async def test_no_copies_when_switched_off(tmp_path: Path) -> None:
    chosen = settings(tmp_path, "redis://127.0.0.1:6379/0", redis_local_cache=False)
    client = create_redis_client(chosen.redis_url)
    try:
        assert _local_copies(chosen, client) is None
    finally:
        await client.aclose()


async def test_no_copies_behind_sentinel_where_a_failover_could_hide_invalidations(
    tmp_path: Path,
) -> None:
    chosen = settings(tmp_path, "redis+sentinel://127.0.0.1:26379/mymaster")
    client = create_redis_client(chosen.redis_url)
    try:
        assert _local_copies(chosen, client) is None
    finally:
        await client.aclose()
