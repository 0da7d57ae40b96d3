"""Database errors in words an operator can act on, for the command line.

:func:`explain` turns what the driver raised while connecting or migrating into one line
naming the cause (a missing role or database, a refused or unknown host, a table in the way,
an unmigrated database); :func:`detail` gives the driver's own words for ``BASTION_DEBUG``.
Neither ever shows the password of the database URL.
"""

from __future__ import annotations

import re
import socket
import sqlite3
from urllib.parse import quote

from alembic.util.exc import CommandError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from bastion.db import sqlite_file
from bastion.files import LockTimeout

NOT_MIGRATED = "the database is not migrated; run `bastion db upgrade`"
_EXISTING_TABLE = re.compile(r'(?:relation|table) "?([^"\s]+)"? already exists')
# PostgreSQL SQLSTATE classes: 08 connection exception, 53 insufficient resources,
# 57 operator intervention (shutting down, starting up).
_UNAVAILABLE_CLASSES = ("08", "53", "57")


def explain(error: BaseException, url: str, *, timeout: float) -> str | None:
    """One line naming why the database at ``url`` failed, or None when ``error`` is not
    a database problem."""
    parsed = make_url(url)
    where = _where(url)
    cause = driver_error(error)
    if isinstance(cause, LockTimeout):
        return f"another process is migrating the database ({cause})"
    if isinstance(cause, TimeoutError | sa_exc.TimeoutError):
        return f"database unavailable: no answer from {where} within {timeout:g} s"
    if isinstance(cause, socket.gaierror):
        return f"database unavailable: host {parsed.host} not found"
    if isinstance(cause, ConnectionRefusedError):
        return f"database unavailable: {where} refused the connection (is the server running?)"
    if isinstance(cause, OSError):
        reason = cause.strerror or _first_line(cause, url)
        return f"database unavailable: cannot connect to {where} ({reason})"
    message = _first_line(cause, url)
    existing = _EXISTING_TABLE.search(message)
    if existing:
        return (
            f"cannot migrate: table {existing.group(1)} already exists and Bastion's "
            "migrations did not create it; Bastion's tables are named bastion_*, so rename "
            "the application's table"
        )
    sqlstate = getattr(cause, "sqlstate", None)
    if isinstance(sqlstate, str):
        return _postgres(sqlstate, message, where)
    if isinstance(cause, sqlite3.Error):
        return _sqlite(cause, message, sqlite_file(url))
    if isinstance(error, sa_exc.DBAPIError):
        return f"database error ({type(cause).__name__})"
    if isinstance(error, CommandError) and "revision" in message:
        # The database is at a revision that this version's migrations do not list.
        return "the database was migrated by a newer version of Bastion; upgrade Bastion"
    return None


def detail(error: BaseException, url: str) -> str:
    """The driver's error class and message, on one line and without the URL's password."""
    cause = driver_error(error)
    kind = type(cause)
    return f"{kind.__module__}.{kind.__qualname__}: {_first_line(cause, url, limit=300)}"


def driver_error(error: BaseException) -> BaseException:
    """The driver's own exception inside a SQLAlchemy error (asyncpg's through its adapter)."""
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        return error.orig.__cause__ or error.orig
    return error


def _postgres(sqlstate: str, message: str, where: str) -> str:
    if sqlstate.startswith("28"):  # no such role, wrong password, refused by pg_hba.conf
        return f"cannot sign in to the database at {where}: {message}"
    if sqlstate == "3D000":
        return f"{message} on {where}"
    if sqlstate == "42P01":
        return NOT_MIGRATED
    if sqlstate.startswith(_UNAVAILABLE_CLASSES):
        return f"database unavailable: {message}"
    return f"database error {sqlstate}: {message}"


def _sqlite(error: sqlite3.Error, message: str, path: object) -> str:
    name = getattr(error, "sqlite_errorname", "") or ""
    if message.startswith("no such table"):
        return NOT_MIGRATED
    if name == "SQLITE_CANTOPEN":
        return f"cannot open the SQLite database {path} (does its folder exist, writable?)"
    if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED"):
        return f"database unavailable: the SQLite database {path} is locked by another process"
    if name.startswith("SQLITE_READONLY"):
        return f"the SQLite database {path} is read-only"
    if name == "SQLITE_NOTADB":
        return f"{path} is not a SQLite database"
    if name == "SQLITE_FULL":
        return f"the disk holding the SQLite database {path} is full"
    return f"database error ({name or type(error).__name__}): {message}"


def _where(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(sqlite_file(url) or "the in-memory SQLite database")
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def redact(text: str, url: str) -> str:
    """``text`` without the password of the database ``url`` (as typed or URL-encoded)."""
    password = make_url(url).password if url else None
    if password:
        for form in {str(password), quote(str(password), safe="")}:
            text = text.replace(form, "***")
    return text


def _first_line(error: BaseException, url: str, *, limit: int = 200) -> str:
    return redact(" ".join(str(error).split())[:limit] or type(error).__name__, url)


__all__ = ["NOT_MIGRATED", "detail", "driver_error", "explain", "redact"]
