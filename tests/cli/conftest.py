"""Fixtures for the ``bastion`` command.

Two ways to run it, both against the same data folder and a clean environment (no
``BASTION_*`` variable of the caller's leaks in, no ``.env`` file is in the working folder):

* ``cli.script(...)`` runs the real console script in a subprocess: exit status, stdout and
  stderr exactly as a shell sees them. Each run costs a second or more (imports), so the
  tests use it where the process boundary matters: exit codes, tracebacks, stdin.
* ``cli.invoke(...)`` runs the Typer app in this process (``typer.testing.CliRunner``): fast,
  for behaviour behind the commands and for the prompts.

``library`` opens Bastion's own services on the same settings, to seed users and sessions
and to check what a command changed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.migrate import upgrade
from bastion.services import Services, open_services
from bastion.settings import Settings
from bastion.users.repository import UserRecord
from tests.conftest import fresh_database
from tests.roles import define_roles

T = TypeVar("T")

BASTION = Path(sys.executable).with_name("bastion")
SCRIPT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Outcome:
    """What one run of the command left behind."""

    code: int
    stdout: str
    stderr: str


def assert_ok(outcome: Outcome) -> None:
    assert outcome.code == 0, outcome
    assert "Traceback" not in outcome.stderr, outcome


def assert_handled_error(outcome: Outcome, fragment: str) -> str:
    """Exit 1 with exactly one line on stderr, ``error: ...`` holding ``fragment``."""
    assert outcome.code == 1, outcome
    assert "Traceback" not in outcome.stderr, outcome
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1, outcome
    assert lines[0].startswith("error: "), outcome
    assert fragment in lines[0], outcome
    return lines[0]


USERS_HEADER = ("NAME", "EMAIL", "STATE", "ROLES")
SESSIONS_HEADER = ("ID", "USER", "KIND", "ADDRESS", "DEVICE", "CREATED", "LAST SEEN")
KEYS_HEADER = ("KID", "ALG", "CREATED", "RETIRED", "USE")


def table(stdout: str, header: Sequence[str]) -> list[list[str]]:
    """The rows of a list command's tab-separated output, below its header row."""
    lines = stdout.splitlines()
    assert lines, "no header row"
    assert lines[0].split("\t") == list(header)
    return [line.split("\t") for line in lines[1:]]


def assert_usage_error(outcome: Outcome, fragment: str) -> None:
    assert outcome.code == 2, outcome
    assert "Traceback" not in outcome.stderr, outcome
    assert fragment in outcome.stderr, outcome


class Cli:
    """Runs ``bastion`` on one data folder, as a subprocess or in this process."""

    def __init__(self, workdir: Path, data_dir: Path) -> None:
        self.workdir = workdir
        self.data_dir = data_dir

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        # The `cli` fixture has already cleaned this process's environment; a test may add
        # BASTION_* variables to it (monkeypatch) for both ways of running.
        return {**os.environ, **(extra or {})}

    def script(
        self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> Outcome:
        """Run the installed console script; stdin is ``input`` (empty when None)."""
        done = subprocess.run(
            [str(BASTION), *args],
            input=input or "",
            capture_output=True,
            text=True,
            env=self.environment(env),
            cwd=self.workdir,
            timeout=SCRIPT_TIMEOUT,
            check=False,
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    def invoke(
        self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> Outcome:
        """Run the Typer app in this process; an unhandled exception propagates."""
        result = CliRunner().invoke(
            app, list(args), input=input, env=dict(env or {}), catch_exceptions=False
        )
        return Outcome(result.exit_code, result.stdout, result.stderr)


class Library:
    """Bastion's services on the settings the command sees, one event loop per call."""

    def __init__(self) -> None:
        self._migrated = False

    def run(self, work: Callable[[Services], Awaitable[T]]) -> T:
        async def main() -> T:
            settings = Settings()
            if not self._migrated:
                await upgrade(settings.resolved_database_url)
                self._migrated = True
            services = await open_services(settings)
            try:
                return await work(services)
            finally:
                await services.aclose()

        return asyncio.run(main())

    def add_user(
        self, name: str, password: str = "library-password-1", roles: tuple[str, ...] = ()
    ) -> UserRecord:
        async def work(services: Services) -> UserRecord:
            hashed = await services.passwords.hash_async(password)
            await define_roles(services.users, roles)
            return await services.users.create_user(name, hashed, roles=roles)

        return self.run(work)

    def add_session(
        self, user: UserRecord, *, ip: str | None = None, user_agent: str | None = None
    ) -> str:
        """Start a session for ``user``; returns its public id (what ``sessions`` shows)."""

        async def work(services: Services) -> str:
            _, session = await services.sessions.create(
                user.id, username=user.username, ip=ip, user_agent=user_agent
            )
            return session.key

        return self.run(work)

    def user(self, name: str) -> UserRecord | None:
        return self.run(lambda services: services.users.get_by_username(name))

    def usernames(self) -> list[str]:
        async def work(services: Services) -> list[str]:
            return [user.username for user in await services.users.list_users(limit=1000)]

        return self.run(work)

    def live_sessions(self, user: UserRecord) -> set[str]:
        async def work(services: Services) -> set[str]:
            return {session.key for session in await services.sessions.list_for_user(user.id)}

        return self.run(work)

    def password_matches(self, name: str, password: str) -> bool:
        async def work(services: Services) -> bool:
            user = await services.users.get_by_username(name)
            assert user is not None, f"no user {name}"
            return (await services.passwords.verify_async(password, user.password_hash)).ok

        return self.run(work)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``bastion`` on a fresh data folder; this process gets the same clean environment."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    data_dir = tmp_path / "data"
    for name in list(os.environ):
        if name.startswith("BASTION_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BASTION_DATA_DIR", str(data_dir))
    monkeypatch.setenv("BASTION_ENV", "test")
    monkeypatch.chdir(workdir)  # no stray .env file is read
    return Cli(workdir, data_dir)


@pytest.fixture
def library(cli: Cli) -> Library:
    return Library()


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """An empty database of this test's own on the real PostgreSQL server."""
    with fresh_database(postgres_url) as url:
        yield url
