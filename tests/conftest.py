"""Shared fixtures: real PostgreSQL and Redis servers, and the CI rule for skips.

Locally a test that needs a missing server is skipped with the reason; under ``CI=true``
the same situation is a failure, so CI can never go green by skipping a backend.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from hypothesis import settings
from sqlalchemy.engine import make_url

# pytester for the plugin's own tests; every_test_runs fails a run in which a collected
# test never ran (tests/unit/test_every_test_runs.py).
# tests.mail_server: a real SMTP server (aiosmtpd) as fixtures for every test.
pytest_plugins = ["pytester", "tests.every_test_runs", "tests.mail_server"]

# No per-example deadline: a timing limit is a timing assertion, and on a loaded CI machine
# it fails tests whose behaviour is fine.
settings.register_profile("bastion", deadline=None)
settings.load_profile("bastion")


def ci_requested(value: str | None) -> bool:
    """Whether ``CI`` asks for CI rules: any of the usual spellings of true (CI services set
    ``true``, people type ``1``); anything else, unset included, is a local run."""
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


IN_CI = ci_requested(os.environ.get("CI"))
POSTGRES_URL = os.environ.get(
    "BASTION_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BASTION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def backend_missing(reason: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"backend required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def port_open(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1.0):
            return True
    except OSError:
        return False


def admin_sql(url: str, sql: str) -> None:
    """Run one statement on the PostgreSQL database at ``url`` (a SQLAlchemy URL), outside
    any transaction: CREATE/DROP DATABASE refuse to run inside one. Runs its own event
    loop, so an async caller goes through ``asyncio.to_thread``."""
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def run() -> None:
        connection = await asyncpg.connect(dsn, timeout=10)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


def empty_bastion_tables(url: str) -> None:
    """Empty every table of Bastion's in the migrated PostgreSQL database at ``url``, ids
    restarted, and put back the rows the migrations add (the built-in roles): as cheap a
    fresh start as a new database, which costs about half a second."""
    import bastion.federation.models
    import bastion.mfa.models
    import bastion.users.models  # noqa: F401  (the user tables join the metadata)
    from bastion.db import metadata
    from bastion.migrations.initial_schema import BUILTIN_ROLES

    roles = ", ".join(f"('{name}')" for name in BUILTIN_ROLES)
    admin_sql(
        url,
        f"TRUNCATE {', '.join(metadata.tables)} RESTART IDENTITY CASCADE; "
        f"INSERT INTO bastion_roles (name) VALUES {roles}",
    )


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of ``server_url``: yields its
    SQLAlchemy URL, then drops it, connections still open to it included."""
    name = f"bastion_test_{secrets.token_hex(6)}"
    admin_sql(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the real PostgreSQL server, dropped after the run."""
    if not port_open(POSTGRES_URL):
        backend_missing(f"PostgreSQL not reachable at {urlsplit(POSTGRES_URL).netloc}")
    with fresh_database(POSTGRES_URL) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not port_open(REDIS_URL):
        backend_missing(f"Redis not reachable at {urlsplit(REDIS_URL).netloc}")
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test run; every key under it is deleted afterwards."""
    import redis

    prefix = f"bastion-test-{secrets.token_hex(6)}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster of three masters started for this run (tests/cluster.py), as a
    ``redis+cluster://`` URL; every node is killed afterwards."""
    from tests.cluster import cluster_tools_missing, redis_cluster

    missing = cluster_tools_missing()
    if missing:
        backend_missing(f"cannot start a Redis Cluster: {missing}")
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.url


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask (new files 0644, folders 0755 unless asked otherwise) for this test."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]
