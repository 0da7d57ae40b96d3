"""Two `bastion serve` processes on different ports, sharing Redis and PostgreSQL.

``pair`` starts them once per test module, twice over: with the standalone Redis (under a
prefix of its own) and with the three-master Redis Cluster that ``redis_cluster_url``
starts for the run. Both processes use one fresh PostgreSQL database (migrated with
``bastion db upgrade``) holding the users alice and carol (password ``PASSWORD``), one JWK
set file and one secret key, and nothing else in common: each has its own data folder.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from bastion.db import create_engine
from bastion.passwords import Passwords
from bastion.users.repository import UserRepository
from tests.conftest import fresh_database
from tests.live import BASTION, LiveServer, live_server, server_env

PASSWORD = "two processes, one truth"
COOKIE = "bastion_session"


@dataclass
class Pair:
    """Processes A and B, and where their shared Redis keys live."""

    a: LiveServer
    b: LiveServer
    redis_url: str
    redis_prefix: str


def _create_users(database_url: str, *names: str) -> None:
    """Through the library, in this process: a `bastion users create` each would cost a
    few seconds of interpreter start on a busy machine."""

    async def run() -> None:
        engine = create_engine(database_url)
        try:
            users, passwords = UserRepository(engine), Passwords()
            for name in names:
                await users.create_user(name, await passwords.hash_async(PASSWORD))
        finally:
            await engine.dispose()

    asyncio.run(run())


def _bastion(env: Mapping[str, str], *args: str) -> None:
    done = subprocess.run(
        [BASTION, *args], env=dict(env), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"bastion {' '.join(args)}: {done.stderr.strip()}"


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("redis", marks=pytest.mark.backend("redis")),
        pytest.param("redis-cluster", marks=pytest.mark.backend("redis")),
    ],
)
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[Pair]:
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        prefix = f"{request.getfixturevalue('redis_prefix')}:scale"
    else:
        redis_url = request.getfixturevalue("redis_cluster_url")
        prefix = "bastion-scale"
    root = tmp_path_factory.mktemp(f"two-{request.param}")
    # A database of their own: the run's `postgres_url` database also holds tables the
    # store and user suites create without Alembic, which `db upgrade` would collide with.
    with fresh_database(postgres_url) as database_url, ExitStack() as stack:
        shared = {
            "BASTION_DATABASE_URL": database_url,
            "BASTION_REDIS_URL": redis_url,
            "BASTION_REDIS_PREFIX": prefix,
            "BASTION_SECRET_KEY": secrets.token_urlsafe(48),
            "BASTION_JWT_KEYS_FILE": str(root / "shared" / "jwks.json"),
            "BASTION_LOGIN_MAX_FAILURES": "2",
            # Every request comes from 127.0.0.1: keep the per-address limit out of the way.
            "BASTION_LOGIN_IP_LIMIT": "1000/minute",
        }
        _bastion(server_env(root / "setup", shared), "db", "upgrade")
        _create_users(database_url, "alice", "carol")
        folders = [root / "a", root / "b"]
        for folder in folders:
            folder.mkdir()
        # Both start at once, so they also race to create the shared key file.
        with ThreadPoolExecutor(2) as pool:
            starting = [
                pool.submit(stack.enter_context, live_server(folder, shared)) for folder in folders
            ]
            a, b = (future.result() for future in starting)
        yield Pair(a, b, redis_url, prefix)


def client(server: LiveServer, raw_cookie: str | None = None) -> httpx.Client:
    cookies = {COOKIE: raw_cookie} if raw_cookie else None
    return httpx.Client(base_url=server.url, cookies=cookies, follow_redirects=False, timeout=10)


def grant(server: LiveServer, username: str = "alice", password: str = PASSWORD) -> httpx.Response:
    form = {"grant_type": "password", "username": username, "password": password}
    with client(server) as api:
        return api.post("/api/token", data=form)
