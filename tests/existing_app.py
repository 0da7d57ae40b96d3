"""The notes application of docs/examples/existing_app, set up as docs/existing-app.md says:
its database built from empty by both Alembic histories (``bastion db upgrade``, then the
application's ``alembic upgrade head``), then ``bastion serve --app notes.app:app`` in its
folder."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bastion.db import create_engine
from tests.live import BASTION, LiveServer, live_server, server_env

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "existing_app"
APP = "notes.app:app"
ALEMBIC = str(Path(sys.executable).with_name("alembic"))
SITE_NAME = "Acme Notes"
PASSWORD = "notes example password 3"
USERS = ("alice", "bob")


def run_in_example(env: Mapping[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in the example's folder (where its alembic.ini is), as a user types it."""
    return subprocess.run(
        list(command), cwd=EXAMPLE, env=dict(env), capture_output=True, text=True, timeout=120
    )


def build_database(env: Mapping[str, str]) -> None:
    """Bastion's tables first, then the application's, which refer to ``bastion_users``."""
    for command in ((BASTION, "db", "upgrade"), (ALEMBIC, "upgrade", "head")):
        done = run_in_example(env, *command)
        assert done.returncode == 0, done.stderr


@dataclass
class NotesSite:
    """The running notes application, and the database it shares with Bastion."""

    live: LiveServer
    database_url: str

    @property
    def url(self) -> str:
        return self.live.url

    def sql(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        """The rows of one statement on the shared database."""

        async def run() -> list[tuple[Any, ...]]:
            engine = create_engine(self.database_url)
            try:
                async with engine.begin() as conn:
                    return [tuple(row) for row in await conn.execute(text(statement), params)]
            finally:
                await engine.dispose()

        return asyncio.run(run())


@contextmanager
def notes_server(data_dir: Path, database_url: str | None = None) -> Iterator[NotesSite]:
    """The example on a database built from empty (the embedded SQLite file in ``data_dir``,
    or ``database_url``), named ``SITE_NAME``, with the users alice and bob."""
    extra = {"BASTION_SITE_NAME": SITE_NAME}
    if database_url is not None:
        extra["BASTION_DATABASE_URL"] = database_url
    build_database(server_env(data_dir, extra))
    with live_server(data_dir, extra, app=APP, cwd=EXAMPLE) as live:
        for name in USERS:
            created = live.cli("users", "create", name, "--password-stdin", stdin=PASSWORD + "\n")
            assert created.returncode == 0, created.stderr
        yield NotesSite(live, database_url or f"sqlite+aiosqlite:///{data_dir / 'bastion.db'}")
