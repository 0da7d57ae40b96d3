"""A store in the SQL database (SQLite or PostgreSQL), on SQLAlchemy Core.

Plain values live in ``bastion_kv`` and sets in ``bastion_kv_member`` (see :mod:`bastion.db`).
Every operation that must be atomic is one statement (an upsert, ``DELETE ... RETURNING``) or
one transaction, so concurrent processes sharing the database agree. Expired rows are
invisible at once and deleted later: in small batches during writes, and by
:meth:`SQLStore.purge_expired`.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import hashlib
import importlib
import logging
import sqlite3
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    LargeBinary,
    Table,
    Text,
    and_,
    case,
    cast,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bastion.clock import Clock, system_clock
from bastion.db import kv_member_table, kv_table
from bastion.exceptions import StoreUnavailable
from bastion.stores.base import NO_EXPIRY, check_ttl

logger = logging.getLogger(__name__)

T = TypeVar("T")

_NAMESPACE_MAX = 64  # lengths of the columns in bastion.db
_COLUMN_MAX = 255
_DIGEST_PREFIX = "#sha256:"
_PURGE_BATCH = 500
_GET_MANY_BATCH = 500  # keys per SELECT: far below SQLite's and asyncpg's parameter limits


def _driver_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "the database did not serve us", whichever driver raised them."""
    errors: list[type[BaseException]] = [SQLAlchemyError, OSError, TimeoutError, sqlite3.Error]
    try:  # asyncpg raises its own errors before SQLAlchemy wraps them (during connect)
        asyncpg = importlib.import_module("asyncpg")
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        pass
    else:
        errors += [
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.InternalClientError,
        ]
    return tuple(errors)


_DB_ERRORS = _driver_errors()

# SQLite has one writer at a time and its busy handler waits by sleeping and polling, which
# under load costs more than the work. Coroutines of this process queue on a lock per
# database (and event loop: asyncio locks belong to one) instead; other processes still
# meet the busy timeout.
_sqlite_locks: weakref.WeakKeyDictionary[
    Engine, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
] = weakref.WeakKeyDictionary()


def _sqlite_lock(engine: AsyncEngine) -> asyncio.Lock:
    per_loop = _sqlite_locks.get(engine.sync_engine)
    if per_loop is None:
        per_loop = _sqlite_locks[engine.sync_engine] = weakref.WeakKeyDictionary()
    loop = asyncio.get_running_loop()
    lock = per_loop.get(loop)
    if lock is None:
        lock = per_loop[loop] = asyncio.Lock()
    return lock


def _db_key(key: str) -> str:
    """The key as stored: itself, or a digest when the column cannot hold it.

    Keys longer than the column, with NUL (PostgreSQL text refuses it) or not encodable
    become ``#sha256:<hex>``; keys that already start with that prefix are hashed too, so
    two different keys never share a row.
    """
    if len(key) <= _COLUMN_MAX and "\x00" not in key and not key.startswith(_DIGEST_PREFIX):
        try:
            key.encode()
        except UnicodeEncodeError:
            pass
        else:
            return key
    return _DIGEST_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _check_member(member: str) -> str:
    # Members are returned as they are, so they cannot be hashed like keys.
    if len(member) > _COLUMN_MAX or "\x00" in member:
        raise ValueError(f"set members are limited to {_COLUMN_MAX} characters without NUL")
    return member


def _check_namespace(namespace: str) -> str:
    if not namespace or len(namespace) > _NAMESPACE_MAX or "\x00" in namespace:
        raise ValueError(f"namespace must have 1 to {_NAMESPACE_MAX} characters without NUL")
    return namespace


def _describe(exc: BaseException, timeout: float) -> str:
    """What went wrong, for logs: error classes and SQLSTATE, never SQL, keys or URLs."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    names = [type(exc).__name__]
    orig = getattr(exc, "orig", None)  # the driver error inside a SQLAlchemy DBAPIError
    if orig is not None:
        names.append(type(orig).__name__)
        if orig.__cause__ is not None:  # SQLAlchemy's asyncpg adapter wraps asyncpg's error
            names.append(type(orig.__cause__).__name__)
    for code in (
        getattr(orig, "sqlstate", None) or getattr(exc, "sqlstate", None),  # PostgreSQL
        getattr(orig, "sqlite_errorname", None) or getattr(exc, "sqlite_errorname", None),
    ):
        if isinstance(code, str):
            names.append(code)
    return ": ".join(names)


async def create_store_tables(engine: AsyncEngine) -> None:
    """Create the store's two tables if missing (tests; production runs the migrations)."""
    async with engine.begin() as conn:
        await conn.run_sync(
            kv_table.metadata.create_all, tables=[kv_table, kv_member_table], checkfirst=True
        )


@dataclass(slots=True)
class _Shared:
    """State shared by a store and its children."""

    next_purge: float = 0.0  # time.monotonic() of the next opportunistic purge
    closed: bool = False


class SQLStore:
    """A :class:`~bastion.stores.base.Store` in the tables of :mod:`bastion.db`.

    ``timeout`` bounds every call, connection included; a failure or timeout raises
    :class:`StoreUnavailable` naming ``component``. Every ``purge_interval`` seconds one
    write also deletes a batch of expired rows. The engine is disposed by :meth:`aclose`
    only with ``owns_engine``, since it is usually shared with the user repository.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        namespace: str = "bastion",
        clock: Clock = system_clock,
        component: str = "session store",
        *,
        timeout: float = 2.0,
        owns_engine: bool = False,
        purge_interval: float = 60.0,
    ) -> None:
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"SQLStore supports SQLite and PostgreSQL, not {dialect}")
        self._engine = engine
        self._postgres = dialect == "postgresql"
        self._namespace = _check_namespace(namespace)
        self._clock = clock
        self.component = component
        self._timeout = timeout
        self._owns_engine = owns_engine
        self._purge_interval = purge_interval
        self._shared = _Shared()

    def __repr__(self) -> str:
        return f"SQLStore(namespace={self._namespace!r}, dialect={self._engine.dialect.name!r})"

    @property
    def namespace(self) -> str:
        return self._namespace

    def child(self, namespace: str) -> SQLStore:
        if not namespace:
            raise ValueError("namespace must not be empty")
        view = copy.copy(self)  # same engine and shared state
        view._namespace = _check_namespace(f"{self._namespace}:{namespace}")
        view._owns_engine = False  # only the parent closes what they share
        return view

    # -- internals -------------------------------------------------------------------

    async def _run(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``op`` in one transaction, bounded by the timeout, errors made uniform."""
        try:
            async with (
                asyncio.timeout(self._timeout),
                nullcontext() if self._postgres else _sqlite_lock(self._engine),
                self._engine.begin() as conn,
            ):
                return await op(conn)
        except _DB_ERRORS as exc:
            # `from None`: the driver's message may hold SQL, parameters or the host.
            raise StoreUnavailable(self.component, _describe(exc, self._timeout)) from None

    async def _after_write(self) -> None:
        shared = self._shared
        now = time.monotonic()
        if now < shared.next_purge:
            return
        shared.next_purge = now + self._purge_interval
        try:
            await self._purge_batch()
        except StoreUnavailable as exc:  # the write itself succeeded; try again later
            logger.debug("purge of expired rows failed: %s", exc.detail)

    async def _purge_batch(self) -> int:
        now = self._clock()

        async def op(conn: AsyncConnection) -> int:
            purged = 0
            for table in (kv_table, kv_member_table):
                pk = list(table.primary_key.columns)
                expired = select(*pk).where(table.c.expires_at <= now).limit(_PURGE_BATCH)
                result = await conn.execute(delete(table).where(tuple_(*pk).in_(expired)))
                purged += result.rowcount
            return purged

        return await self._run(op)

    def _expires_at(self, ttl: float | None) -> float | None:
        check_ttl(ttl)
        return None if ttl is None else self._clock() + ttl

    def _row(self, table: Table, key: str) -> ColumnElement[bool]:
        return and_(table.c.namespace == self._namespace, table.c.key == _db_key(key))

    @staticmethod
    def _visible(table: Table, now: float) -> ColumnElement[bool]:
        return or_(table.c.expires_at.is_(None), table.c.expires_at > now)

    @staticmethod
    def _expired(table: Table, now: float) -> ColumnElement[bool]:
        return and_(table.c.expires_at.is_not(None), table.c.expires_at <= now)

    @staticmethod
    def _live(expires_at: float | None, now: float) -> bool:
        return expires_at is None or expires_at > now

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        return postgresql.insert(table) if self._postgres else sqlite.insert(table)

    def _counter_plus(self, amount: int) -> ColumnElement[Any]:
        """SQL for the stored ASCII decimal value plus ``amount``, as ASCII bytes again."""
        value = kv_table.c.value
        if self._postgres:
            utf8: ColumnElement[str] = literal_column("'UTF8'")
            number = cast(func.convert_from(value, utf8), BigInteger) + literal(amount, BigInteger)
            return func.convert_to(cast(number, Text), utf8, type_=LargeBinary)
        number = cast(cast(value, Text), Integer) + literal(amount, Integer)
        return cast(cast(number, Text), LargeBinary)

    # -- the Store contract ----------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        now = self._clock()
        stmt = select(kv_table.c.value).where(
            self._row(kv_table, key), self._visible(kv_table, now)
        )

        async def op(conn: AsyncConnection) -> bytes | None:
            value: bytes | None = await conn.scalar(stmt)
            return value

        return await self._run(op)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        now = self._clock()
        db_keys = [_db_key(k) for k in keys]
        unique = list(dict.fromkeys(db_keys))
        statements = [
            select(kv_table.c.key, kv_table.c.value).where(
                kv_table.c.namespace == self._namespace,
                kv_table.c.key.in_(unique[i : i + _GET_MANY_BATCH]),
                self._visible(kv_table, now),
            )
            for i in range(0, len(unique), _GET_MANY_BATCH)
        ]

        async def op(conn: AsyncConnection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for stmt in statements:
                for row in await conn.execute(stmt):
                    found[row.key] = row.value
            return found

        found = await self._run(op)
        return [found.get(k) for k in db_keys]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        ins = self._insert(kv_table).values(
            namespace=self._namespace,
            key=_db_key(key),
            value=value,
            expires_at=self._expires_at(ttl),
        )
        stmt = ins.on_conflict_do_update(
            index_elements=[kv_table.c.namespace, kv_table.c.key],
            set_={"value": ins.excluded.value, "expires_at": ins.excluded.expires_at},
        )

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._run(op)
        await self._after_write()

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        expires_at = self._expires_at(ttl)
        ins = self._insert(kv_table).values(
            namespace=self._namespace, key=_db_key(key), value=value, expires_at=expires_at
        )
        # An expired row counts as absent: overwrite it, but only it.
        stmt = ins.on_conflict_do_update(
            index_elements=[kv_table.c.namespace, kv_table.c.key],
            set_={"value": ins.excluded.value, "expires_at": ins.excluded.expires_at},
            where=self._expired(kv_table, self._clock()),
        ).returning(kv_table.c.key)

        async def op(conn: AsyncConnection) -> bool:
            return (await conn.execute(stmt)).first() is not None

        stored = await self._run(op)
        await self._after_write()
        return stored

    async def replace(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        now = self._clock()
        # One UPDATE of a live row: a row deleted meanwhile is never brought back.
        stmt = (
            update(kv_table)
            .where(self._row(kv_table, key), self._visible(kv_table, now))
            .values(value=value, expires_at=self._expires_at(ttl))
        )

        async def op(conn: AsyncConnection) -> bool:
            return (await conn.execute(stmt)).rowcount > 0

        return await self._run(op)

    async def pop(self, key: str) -> bytes | None:
        now = self._clock()
        stmt = (
            delete(kv_table)
            .where(self._row(kv_table, key))
            .returning(kv_table.c.value, kv_table.c.expires_at)
        )

        async def op(conn: AsyncConnection) -> bytes | None:
            row = (await conn.execute(stmt)).first()
            if row is None or not self._live(row.expires_at, now):
                return None
            value: bytes = row.value
            return value

        return await self._run(op)

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        now = self._clock()
        db_keys = {_db_key(k) for k in keys}

        async def op(conn: AsyncConnection) -> int:
            alive: set[str] = set()
            for table in (kv_table, kv_member_table):
                stmt = (
                    delete(table)
                    .where(table.c.namespace == self._namespace, table.c.key.in_(db_keys))
                    .returning(table.c.key, table.c.expires_at)
                )
                for row in await conn.execute(stmt):
                    if self._live(row.expires_at, now):
                        alive.add(row.key)
            return len(alive)

        return await self._run(op)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = self._clock()
        expired = self._expired(kv_table, now)
        ins = self._insert(kv_table).values(
            namespace=self._namespace,
            key=_db_key(key),
            value=str(amount).encode(),
            expires_at=self._expires_at(ttl),
        )
        # Both SET expressions see the old row, so an expired counter restarts with the new
        # ttl while a live one keeps its expiry (a fixed window).
        stmt = ins.on_conflict_do_update(
            index_elements=[kv_table.c.namespace, kv_table.c.key],
            set_={
                "value": case((expired, ins.excluded.value), else_=self._counter_plus(amount)),
                "expires_at": case((expired, ins.excluded.expires_at), else_=kv_table.c.expires_at),
            },
        ).returning(kv_table.c.value)

        async def op(conn: AsyncConnection) -> int:
            value = (await conn.execute(stmt)).scalar_one()
            return int(value)

        result = await self._run(op)
        await self._after_write()
        return result

    async def ttl(self, key: str) -> float | None:
        now = self._clock()

        async def op(conn: AsyncConnection) -> float | None:
            for table in (kv_table, kv_member_table):
                stmt = (
                    select(table.c.expires_at)
                    .where(self._row(table, key), self._visible(table, now))
                    .limit(1)
                )
                row = (await conn.execute(stmt)).first()
                if row is not None:
                    return NO_EXPIRY if row.expires_at is None else float(row.expires_at) - now
            return None

        return await self._run(op)

    async def touch(self, key: str, ttl: float | None) -> bool:
        now = self._clock()
        expires_at = self._expires_at(ttl)

        async def op(conn: AsyncConnection) -> bool:
            touched = 0
            for table in (kv_table, kv_member_table):
                stmt = (
                    update(table)
                    .where(self._row(table, key), self._visible(table, now))
                    .values(expires_at=expires_at)
                )
                touched += (await conn.execute(stmt)).rowcount
            return touched > 0

        return await self._run(op)

    async def sadd(self, key: str, *members: str, ttl: float | None = None) -> int:
        now = self._clock()
        expires_at = self._expires_at(ttl)
        # Sorted: concurrent inserts into one set then lock rows in the same order.
        unique = sorted({_check_member(m) for m in members})
        if not unique:
            return 0
        table = kv_member_table
        this = self._row(table, key)
        db_key = _db_key(key)

        async def op(conn: AsyncConnection) -> int:
            # An expired set is absent: drop its rows so these members start a new set.
            await conn.execute(delete(table).where(this, table.c.expires_at <= now))
            set_expiry = expires_at
            if ttl is None:  # new members share the expiry the set already has
                set_expiry = await conn.scalar(select(table.c.expires_at).where(this).limit(1))
            ins = self._insert(table).values(
                [
                    {
                        "namespace": self._namespace,
                        "key": db_key,
                        "member": m,
                        "expires_at": set_expiry,
                    }
                    for m in unique
                ]
            )
            stmt = ins.on_conflict_do_nothing(
                index_elements=[table.c.namespace, table.c.key, table.c.member]
            ).returning(table.c.member)
            added = len((await conn.execute(stmt)).all())
            if ttl is not None:
                await conn.execute(update(table).where(this).values(expires_at=expires_at))
            return added

        result = await self._run(op)
        await self._after_write()
        return result

    async def srem(self, key: str, *members: str) -> int:
        if not members:
            return 0
        now = self._clock()
        table = kv_member_table
        stmt = (
            delete(table)
            .where(self._row(table, key), table.c.member.in_(set(members)))
            .returning(table.c.expires_at)
        )

        async def op(conn: AsyncConnection) -> int:
            return sum(self._live(row.expires_at, now) for row in await conn.execute(stmt))

        return await self._run(op)

    async def smembers(self, key: str) -> builtins.set[str]:
        now = self._clock()
        table = kv_member_table
        stmt = select(table.c.member).where(self._row(table, key), self._visible(table, now))

        async def op(conn: AsyncConnection) -> set[str]:
            members: Iterable[str] = (await conn.scalars(stmt)).all()
            return set(members)

        return await self._run(op)

    async def ping(self) -> None:
        async def op(conn: AsyncConnection) -> None:
            await conn.execute(select(1))

        await self._run(op)

    async def purge_expired(self) -> int:
        """Delete every expired row of every namespace; returns how many were deleted."""
        total = 0
        while True:
            purged = await self._purge_batch()
            total += purged
            if purged < _PURGE_BATCH:
                return total

    async def aclose(self) -> None:
        if self._owns_engine and not self._shared.closed:
            self._shared.closed = True
            await self._engine.dispose()
