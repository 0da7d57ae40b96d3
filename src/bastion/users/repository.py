"""Queries on users, roles and the audit log.

Every method opens its own short transaction, is bounded by ``timeout`` seconds, and returns
plain frozen dataclasses, never ORM objects, so no caller can trigger a lazy load later.
A database that does not answer raises :class:`StoreUnavailable` ("database"); constraint
violations are not outages and surface as :class:`UserError`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import unicodedata
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bastion.clock import Clock, system_clock, to_datetime
from bastion.exceptions import StoreUnavailable, UserError
from bastion.i18n import lazy
from bastion.text import clean_optional, clean_text
from bastion.users.models import (
    AUDIT_USERNAME_MAX_LENGTH,
    EVENT_MAX_LENGTH,
    IP_MAX_LENGTH,
    SESSION_REF_MAX_LENGTH,
    USER_AGENT_MAX_LENGTH,
    AuditEvent,
    Role,
    User,
    UserRole,
    check_new_username,
    fold,
    normalize_email,
    normalize_role,
    normalize_username,
    username_skeleton,
)
from bastion.users.roles import (
    RoleInUse,
    UnknownRole,
    check_deletable,
    check_role_description,
    check_role_name,
)

try:
    # Imported by name: asyncpg ships no type information.
    _pg: Any = importlib.import_module("asyncpg.exceptions")
    _DRIVER_OUTAGES: tuple[type[BaseException], ...] = (
        _pg.PostgresConnectionError,  # SQLSTATE 08: connection failures
        _pg.OperatorInterventionError,  # 57: statement timeout, shutdown, cannot connect now
        _pg.InsufficientResourcesError,  # 53: too many connections, disk full
        _pg.ReadOnlySQLTransactionError,  # 25006: a hot standby or read-only mode refuses writes
        _pg.InterfaceError,  # connection closed / in use
    )
except ImportError:  # pragma: no cover - asyncpg is a dependency, but SQLite needs none of it
    _DRIVER_OUTAGES = ()

_H = TypeVar("_H")  # what a guarded context yields: an ORM session or a Core connection

# Refusals fit to show the user (whole sentences, translated when shown).
DUPLICATE_USER = lazy("An account with this user name or e-mail address already exists.")
EMAIL_TAKEN = lazy("This e-mail address belongs to another account.")
UNKNOWN_USER = lazy("The user was not found.")
# A duplicate is the name or the address (the unique indexes do not say which).
DUPLICATE_FIELDS = ("username", "email")
# Values per IN (...) list: far below SQLite's and asyncpg's limits on bound parameters.
_IN_CHUNK = 500
# How long a batch insert may take, on top of the repository's timeout: generous, since a
# batch is one transaction that an operator waits for, not a request.
_BATCH_SECONDS_PER_ROW = 0.01


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    email: str | None
    password_hash: str = field(repr=False)
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None
    password_changed_at: datetime
    roles: frozenset[str]
    # When the current address was proven by a link sent to it (None: not verified).
    email_verified_at: datetime | None = None
    # The language the user chose for pages and emails (contract 6.5); None: not chosen.
    language: str | None = None

    @property
    def email_verified(self) -> bool:
        return self.email is not None and self.email_verified_at is not None


@dataclass(frozen=True, slots=True)
class NewUser:
    """An account checked against the rules for new accounts, ready to insert: the name as
    shown, its comparison keys, and the e-mail address with its key (see :func:`new_user`)."""

    username: str
    username_key: str
    username_skeleton: str
    email: str | None
    email_key: str | None
    password_hash: str = field(repr=False)
    is_active: bool
    roles: frozenset[str]


class UserStillReferenced(UserError):
    """A user to delete is still referred to by a table of the application, through a
    foreign key without ``ON DELETE CASCADE`` or ``SET NULL``; the user stays."""

    def __init__(self) -> None:
        super().__init__(lazy("The application still holds data of this user; remove it first."))


def new_user(
    username: str,
    password_hash: str,
    email: str | None = None,
    roles: Iterable[str] = (),
    is_active: bool = True,
) -> NewUser:
    """The checks every new account passes (one script, nothing invisible, a valid e-mail
    address and role names), and the keys it is stored under; raises :class:`UserError`.

    A blank ``email`` is none. Whether the name or address is taken is for the database to
    say (its unique indexes), at insert time.
    """
    key = check_new_username(username)
    email_display = email.strip() if email is not None and email.strip() else None
    return NewUser(
        username=username.strip(),
        username_key=key,
        username_skeleton=username_skeleton(key),
        email=email_display,
        email_key=normalize_email(email_display) if email_display is not None else None,
        password_hash=password_hash,
        is_active=is_active,
        roles=frozenset(normalize_role(r) for r in roles),
    )


@dataclass(frozen=True, slots=True)
class TakenKeys:
    """Which of the keys asked about belong to existing accounts."""

    username_keys: frozenset[str]
    skeletons: frozenset[str]
    email_keys: frozenset[str]


@dataclass(frozen=True, slots=True)
class RoleRecord:
    """A defined role, with how many users hold it."""

    name: str
    description: str | None
    holders: int


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    event: str
    user_id: int | None
    username: str | None
    actor_id: int | None
    ip: str | None
    user_agent: str | None
    session_ref: str | None
    detail: Mapping[str, Any] | None


def _outage(exc: BaseException, timeout: float) -> StoreUnavailable | None:
    """The StoreUnavailable that ``exc`` amounts to, or None when it is not an outage.

    The detail names the error class and the driver's message only: the wrapped SQLAlchemy
    message would carry the SQL and its parameters (password hashes among them).
    """
    if isinstance(exc, sa_exc.IntegrityError):
        return None
    if isinstance(exc, TimeoutError | sa_exc.TimeoutError):
        return StoreUnavailable("database", f"no answer within {timeout:g} s")
    root: BaseException = exc
    if isinstance(exc, sa_exc.DBAPIError):
        driver = exc.orig.__cause__ if exc.orig is not None else None
        root = driver or exc.orig or exc
        outage = (
            isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
            or exc.connection_invalidated
            or isinstance(driver, _DRIVER_OUTAGES)
        )
    else:
        outage = isinstance(exc, (OSError, *_DRIVER_OUTAGES))
    if not outage:
        return None
    return StoreUnavailable("database", f"{type(root).__name__}: {str(root)[:200]}")


@asynccontextmanager
async def guarded(opening: AbstractAsyncContextManager[_H], seconds: float) -> AsyncIterator[_H]:
    """``opening`` (a transaction, a connection) bounded by ``seconds``, with
    database outages raised as :class:`StoreUnavailable` ("database"); for every module
    that keeps tables of its own (second factors, passkeys)."""
    try:
        async with asyncio.timeout(seconds), opening as handle:
            yield handle
    except Exception as exc:
        outage = _outage(exc, seconds)
        if outage is None:
            raise
        # Not chained: the SQLAlchemy error text holds SQL and bound parameters.
        raise outage from None


def _clip(value: str | None, limit: int) -> str | None:
    """``value`` cleaned for storage (:func:`bastion.text.clean_text`) and cut to ``limit``."""
    return None if value is None else clean_text(value)[:limit]


def _page(offset: int, limit: int) -> tuple[int, int]:
    # No upper cap here: a silent cap would truncate lists; callers that take the page size
    # from a request bound it themselves.
    if offset < 0 or limit < 1:
        raise ValueError("offset must be >= 0 and limit >= 1")
    return offset, limit


def _user_record(user: User | Row[Any], roles: Iterable[str] | None = None) -> UserRecord:
    """From an ORM user (its roles loaded) or a row of the users table (``roles`` given)."""
    names = frozenset(r.name for r in user.roles) if roles is None else frozenset(roles)
    return UserRecord(
        id=user.id,
        username=user.username,
        email=user.email,
        password_hash=user.password_hash,
        is_active=user.is_active,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
        password_changed_at=user.password_changed_at,
        roles=names,
        email_verified_at=user.email_verified_at,
        language=user.language,
    )


def _audit_record(row: AuditEvent) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        at=row.at,
        event=row.event,
        user_id=row.user_id,
        username=row.username,
        actor_id=row.actor_id,
        ip=row.ip,
        user_agent=row.user_agent,
        session_ref=row.session_ref,
        detail=json.loads(row.detail) if row.detail is not None else None,
    )


class UserRepository:
    """Users, their roles and the audit log, on an async SQLAlchemy engine.

    The engine belongs to the caller (make it with :func:`bastion.db.create_engine`, which
    bounds connects and statements too); ``timeout`` bounds each whole method call.
    """

    def __init__(
        self, engine: AsyncEngine, *, clock: Clock = system_clock, timeout: float = 2.0
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.timeout = timeout
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    def _now(self) -> datetime:
        return to_datetime(self.clock())

    def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        """An ORM session in a transaction, bounded and with outages translated."""
        return self._guarded(self._sessions.begin())

    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A Core connection in a transaction, for the statements every sign-in runs: the
        ORM's unit of work and identity map cost more than the queries themselves."""
        return self._guarded(self.engine.begin())

    def _guarded(
        self, opening: AbstractAsyncContextManager[_H], seconds: float | None = None
    ) -> AbstractAsyncContextManager[_H]:
        return guarded(opening, self.timeout if seconds is None else seconds)

    # -- users -----------------------------------------------------------------------------

    async def create_user(
        self,
        username: str,
        password_hash: str,
        email: str | None = None,
        roles: Iterable[str] = (),
        is_active: bool = True,
    ) -> UserRecord:
        """Create a user; look-alike names and e-mail addresses count as duplicates.

        Names that fold to the same key (case, compatibility forms) or share a UTS #39
        skeleton ("admin" spelled with a Cyrillic a, next to "admin") are the same name. New
        names must also pass :func:`check_new_username` (one script, nothing invisible).
        A blank ``email`` is stored as none. Raises ``UserError(DUPLICATE_USER)``
        for every kind of duplicate, even when a concurrent call wins the race (the unique
        indexes decide).
        """
        account = new_user(username, password_hash, email, roles, is_active)
        now = self._now()
        async with self._transaction() as session:
            user = User(**_user_columns(account, now))
            session.add(user)
            try:
                await session.flush()
            except sa_exc.IntegrityError:
                raise UserError(DUPLICATE_USER, fields=DUPLICATE_FIELDS) from None
            await self._link_roles(session, user.id, set(account.roles))
            return _user_record(user, account.roles)

    async def create_users(self, accounts: Sequence[NewUser]) -> int:
        """Insert ``accounts`` (from :func:`new_user`) in one transaction: all of them or,
        on any error, none. Returns how many were inserted.

        For imports: a few statements for the whole batch, not a round trip per user. Their
        roles must be defined (:class:`UnknownRole` otherwise). A name or address that is
        taken, in the batch or by an existing account (also one created meanwhile), is
        ``UserError(DUPLICATE_USER)``.
        """
        if not accounts:
            return 0
        now = self._now()
        role_names = set().union(*(account.roles for account in accounts))
        seconds = self.timeout + _BATCH_SECONDS_PER_ROW * len(accounts)
        async with self._guarded(self.engine.begin(), seconds) as connection:
            role_ids: dict[str, int] = {}
            for chunk in _chunks(sorted(role_names)):
                rows = await connection.execute(
                    select(Role.name, Role.id).where(Role.name.in_(chunk))
                )
                role_ids.update({row.name: row.id for row in rows})
            if missing := role_names - role_ids.keys():
                raise UnknownRole(min(missing))
            try:
                inserted = await connection.execute(
                    insert(User).returning(User.id, User.username_key),
                    [_user_columns(account, now) for account in accounts],
                )
            except sa_exc.IntegrityError:
                raise UserError(DUPLICATE_USER, fields=DUPLICATE_FIELDS) from None
            ids = {row.username_key: row.id for row in inserted}
            links = [
                {"user_id": ids[account.username_key], "role_id": role_ids[role]}
                for account in accounts
                for role in sorted(account.roles)
            ]
            if links:
                await connection.execute(insert(UserRole), links)
        return len(ids)

    async def find_taken(
        self,
        username_keys: Iterable[str],
        skeletons: Iterable[str] = (),
        email_keys: Iterable[str] = (),
    ) -> TakenKeys:
        """Which user-name keys, skeleton digests and e-mail keys (as :class:`NewUser`
        holds them) existing accounts already have: a batch's duplicates, found before
        any insert, in a few queries whatever its size."""
        found: dict[str, set[str]] = {"key": set(), "skeleton": set(), "email": set()}
        columns = {
            "key": (User.username_key, sorted(set(username_keys))),
            "skeleton": (User.username_skeleton, sorted(set(skeletons))),
            "email": (User.email_key, sorted(set(email_keys))),
        }
        asked = max(len(values) for _, values in columns.values())
        seconds = self.timeout + _BATCH_SECONDS_PER_ROW * asked
        async with self._guarded(self.engine.begin(), seconds) as connection:
            for kind, (column, values) in columns.items():
                for chunk in _chunks(values):
                    rows = await connection.scalars(select(column).where(column.in_(chunk)))
                    found[kind].update(value for value in rows if value is not None)
        return TakenKeys(
            frozenset(found["key"]), frozenset(found["skeleton"]), frozenset(found["email"])
        )

    async def get_by_id(self, user_id: int) -> UserRecord | None:
        return await self._one(User.id == user_id)

    async def get_by_username(self, username: str) -> UserRecord | None:
        """The user whose name folds to the same key; None also for invalid names."""
        try:
            key = normalize_username(username)
        except UserError:
            return None
        return await self._one(User.username_key == key)

    async def get_by_email(self, email: str) -> UserRecord | None:
        try:
            key = normalize_email(email)
        except UserError:
            return None
        return await self._one(User.email_key == key)

    async def list_users(
        self, search: str | None = None, offset: int = 0, limit: int = 50
    ) -> list[UserRecord]:
        """Users ordered by name; ``search`` matches a part of the name or e-mail address."""
        offset, limit = _page(offset, limit)
        query = _search(select(User), search).order_by(User.username_key, User.id)
        query = query.options(selectinload(User.roles)).offset(offset).limit(limit)
        async with self._transaction() as session:
            users = (await session.scalars(query)).all()
            return [_user_record(u) for u in users]

    async def count_users(self, search: str | None = None) -> int:
        query = _search(select(func.count()).select_from(User), search)
        async with self._transaction() as session:
            return int(await session.scalar(query) or 0)

    async def set_password_hash(
        self, user_id: int, password_hash: str, *, changed: bool = True
    ) -> None:
        """Store a new hash; stamp ``password_changed_at`` unless ``changed=False``.

        Pass ``changed=False`` when re-hashing the same password (an upgraded algorithm or
        cost at login): the password itself did not change.
        """
        values: dict[str, Any] = {"password_hash": password_hash}
        if changed:
            values["password_changed_at"] = self._now()
        await self._update(user_id, **values)

    async def set_active(self, user_id: int, active: bool) -> None:
        await self._update(user_id, is_active=active)

    async def record_login(self, user_id: int) -> None:
        await self._update(user_id, last_login_at=self._now())

    async def set_language(self, user_id: int, language: str) -> bool:
        """Keep ``language`` as the user's choice; False if there is no such user."""
        statement = update(User).where(User.id == user_id).values(language=language)
        async with self._connection() as connection:
            return _rowcount(await connection.execute(statement)) == 1

    async def mark_email_verified(self, user_id: int, email: str) -> bool:
        """Mark the user's address verified, if it is still ``email`` (compared by key) and
        not verified yet: one conditional UPDATE, so a link for an address the account has
        since left verifies nothing. True when this call verified it."""
        key = normalize_email(email)
        statement = (
            update(User)
            .where(
                User.id == user_id,
                User.email_key == key,
                User.email_verified_at.is_(None),
            )
            .values(email_verified_at=self._now())
        )
        async with self._connection() as connection:
            return _rowcount(await connection.execute(statement)) == 1

    async def change_email(self, user_id: int, old_email: str | None, new_email: str) -> bool:
        """Give the user the confirmed address ``new_email`` (verified now), if their
        address is still ``old_email``: one conditional UPDATE, so of two confirmations
        racing for one account only the first changes it (False for the other). The unique
        index on the address key decides between accounts: an address another account
        holds, even one it took a moment ago, raises ``UserError(EMAIL_TAKEN)``."""
        display = new_email.strip()
        key = normalize_email(display)
        old_key = normalize_email(old_email) if old_email else None
        same_address = User.email_key.is_(None) if old_key is None else User.email_key == old_key
        statement = (
            update(User)
            .where(User.id == user_id, same_address)
            .values(email=display, email_key=key, email_verified_at=self._now())
        )
        try:
            async with self._connection() as connection:
                return _rowcount(await connection.execute(statement)) == 1
        except sa_exc.IntegrityError:
            raise UserError(EMAIL_TAKEN, fields=("email",)) from None

    async def delete_user(self, user_id: int) -> None:
        """Delete a user; the database drops their role links and unlinks their audit rows.

        :class:`UserStillReferenced` (the user stays) while a table of the application
        refers to the user by a foreign key without ``ON DELETE CASCADE`` or ``SET NULL``.
        """
        async with self._transaction() as session:
            try:
                result = await session.execute(delete(User).where(User.id == user_id))
            except sa_exc.IntegrityError:
                raise UserStillReferenced from None
            if _rowcount(result) == 0:
                raise UserError(UNKNOWN_USER)

    # -- roles -----------------------------------------------------------------------------

    async def roles_of(self, user_id: int) -> set[str]:
        query = (
            select(Role.name)
            .join(UserRole, UserRole.role_id == Role.id)
            .where(UserRole.user_id == user_id)
        )
        async with self._transaction() as session:
            return set((await session.scalars(query)).all())

    async def existing_roles(self, names: Iterable[str]) -> set[str]:
        """Those of ``names`` that are defined roles."""
        found: set[str] = set()
        async with self._connection() as connection:
            for chunk in _chunks(sorted(set(names))):
                found.update(
                    await connection.scalars(select(Role.name).where(Role.name.in_(chunk)))
                )
        return found

    async def set_roles(self, user_id: int, roles: Iterable[str]) -> None:
        """Replace the user's roles with ``roles``, which must all be defined
        (:class:`UnknownRole` otherwise, and nothing changes)."""
        names = {normalize_role(r) for r in roles}
        async with self._transaction() as session:
            # Row lock (PostgreSQL; SQLite locks the whole file): concurrent replacements of
            # one user's roles run one after the other instead of merging.
            found = await session.scalar(
                select(User.id).where(User.id == user_id).with_for_update()
            )
            if found is None:
                raise UserError(UNKNOWN_USER)
            await session.execute(delete(UserRole).where(UserRole.user_id == user_id))
            await self._link_roles(session, user_id, names)

    async def _link_roles(self, session: AsyncSession, user_id: int, names: set[str]) -> None:
        """Give the user the defined roles ``names``; an undefined one is refused (roles are
        never made on the way: a typo must not invent a privilege)."""
        if not names:
            return
        found = await session.execute(select(Role.name, Role.id).where(Role.name.in_(names)))
        ids = {row.name: row.id for row in found}
        if missing := names - ids.keys():
            raise UnknownRole(min(missing))
        try:
            session.add_all(UserRole(user_id=user_id, role_id=role_id) for role_id in ids.values())
            await session.flush()
        except sa_exc.IntegrityError:  # the user was deleted meanwhile
            raise UserError(UNKNOWN_USER) from None

    async def list_roles(self) -> list[RoleRecord]:
        """Every defined role by name, with how many users hold it."""
        query = (
            select(Role.name, Role.description, func.count(UserRole.user_id))
            .outerjoin(UserRole, UserRole.role_id == Role.id)
            .group_by(Role.id)
            .order_by(Role.name)
        )
        async with self._connection() as connection:
            rows = (await connection.execute(query)).all()
        return [RoleRecord(name, text, int(holders)) for name, text, holders in rows]

    async def create_role(self, name: str, description: str | None = None) -> RoleRecord:
        """Define a role (a slug, see :func:`check_role_name`); ``UserError`` when it
        exists."""
        name = check_role_name(name)
        text = check_role_description(description)
        values: dict[str, Any] = {"name": name, "description": text}
        try:
            async with self._connection() as connection:
                await connection.execute(insert(Role).values(values))
        except sa_exc.IntegrityError:
            raise UserError(lazy("The role '%(name)s' already exists.", name=name)) from None
        return RoleRecord(name, text, 0)

    async def role_holders(self, name: str) -> list[int]:
        """The ids of the users holding role ``name``; :class:`UnknownRole` if undefined."""
        async with self._connection() as connection:
            role_id = await connection.scalar(select(Role.id).where(Role.name == name))
            if role_id is None:
                raise UnknownRole(name)
            query = select(UserRole.user_id).where(UserRole.role_id == role_id)
            return sorted(await connection.scalars(query.order_by(UserRole.user_id)))

    async def delete_role(self, name: str) -> None:
        """Delete a role nobody holds: :class:`RoleInUse` while a user holds it (take it
        from them first, through :class:`bastion.accounts.Accounts`, so their sessions
        end), :class:`UnknownRole` if undefined. ``admin`` cannot be deleted."""
        check_deletable(name)
        async with self._transaction() as session:
            # Row lock (PostgreSQL): a grant of this role waits for the delete, then fails
            # on the foreign key instead of linking a user to a role about to go.
            role_id = await session.scalar(
                select(Role.id).where(Role.name == name).with_for_update()
            )
            if role_id is None:
                raise UnknownRole(name)
            holders = await session.scalar(
                select(func.count()).select_from(UserRole).where(UserRole.role_id == role_id)
            )
            if holders:
                raise RoleInUse(name, int(holders))
            await session.execute(delete(Role).where(Role.id == role_id))

    # -- audit -----------------------------------------------------------------------------

    async def add_audit(
        self,
        event: str,
        *,
        user_id: int | None = None,
        username: str | None = None,
        actor_id: int | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        session_ref: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an audit event, e.g. ``"login.success"``.

        ``session_ref`` must be a hash or short prefix of a session's hash, never the raw
        session id. Values are stored as :func:`bastion.text.clean_text` makes them (control
        characters, which PostgreSQL may refuse, become U+FFFD) and over-long ones (names
        and user agents as sent) are truncated.
        """
        if not event or len(event) > EVENT_MAX_LENGTH:
            raise ValueError(f"event must be 1 to {EVENT_MAX_LENGTH} characters")
        row: dict[str, Any] = {
            "at": self._now(),
            "event": event,
            "user_id": user_id,
            "username": _clip(username, AUDIT_USERNAME_MAX_LENGTH),
            "actor_id": actor_id,
            "ip": _clip(ip, IP_MAX_LENGTH),
            "user_agent": _clip(user_agent, USER_AGENT_MAX_LENGTH),
            "session_ref": _clip(session_ref, SESSION_REF_MAX_LENGTH),
            # JSON escapes control characters itself; lone surrogates pass through raw.
            "detail": clean_optional(
                None
                if detail is None
                else json.dumps(dict(detail), sort_keys=True, default=str, ensure_ascii=False)
            ),
        }
        try:
            async with self._connection() as connection:
                await connection.execute(insert(AuditEvent).values(row))
        except sa_exc.IntegrityError:
            # The user (or actor) was deleted in between: keep the event, without the link.
            async with self._connection() as connection:
                unlinked = {**row, "user_id": None, "actor_id": None}
                await connection.execute(insert(AuditEvent).values(unlinked))

    async def list_audit(
        self, offset: int = 0, limit: int = 50, user_id: int | None = None
    ) -> list[AuditRecord]:
        """Audit events, newest first, optionally of one user only."""
        offset, limit = _page(offset, limit)
        query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        if user_id is not None:
            query = query.where(AuditEvent.user_id == user_id)
        async with self._transaction() as session:
            rows = (await session.scalars(query.offset(offset).limit(limit))).all()
            return [_audit_record(r) for r in rows]

    async def count_audit(self, user_id: int | None = None) -> int:
        query = select(func.count()).select_from(AuditEvent)
        if user_id is not None:
            query = query.where(AuditEvent.user_id == user_id)
        async with self._transaction() as session:
            return int(await session.scalar(query) or 0)

    # -- health ----------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers ``SELECT 1`` in time."""
        async with self._transaction() as session:
            await session.execute(select(1))

    # -- helpers ---------------------------------------------------------------------------

    async def _one(self, where: ColumnElement[bool]) -> UserRecord | None:
        # One query: the user's columns with each role name (or one row with none).
        users = User.__table__
        query = (
            select(users, Role.name.label("role_name"))
            .select_from(users)
            .outerjoin(UserRole, UserRole.user_id == users.c.id)
            .outerjoin(Role, Role.id == UserRole.role_id)
            .where(where)
        )
        async with self._connection() as connection:
            rows = (await connection.execute(query)).all()
        if not rows:
            return None
        roles = [row.role_name for row in rows if row.role_name is not None]
        return _user_record(rows[0], roles)

    async def _update(self, user_id: int, **values: Any) -> None:
        async with self._connection() as connection:
            statement = update(User).where(User.id == user_id).values(values)
            result = await connection.execute(statement)
            if _rowcount(result) == 0:
                raise UserError(UNKNOWN_USER)


def _user_columns(account: NewUser, now: datetime) -> dict[str, Any]:
    """The users-table row of a new account made at ``now``."""
    return {
        "username": account.username,
        "username_key": account.username_key,
        "username_skeleton": account.username_skeleton,
        "email": account.email,
        "email_key": account.email_key,
        "password_hash": account.password_hash,
        "is_active": account.is_active,
        "created_at": now,
        "last_login_at": None,
        "password_changed_at": now,
        "email_verified_at": None,
    }


_T = TypeVar("_T")


def _chunks(values: Sequence[_T]) -> Iterable[Sequence[_T]]:
    return (values[at : at + _IN_CHUNK] for at in range(0, len(values), _IN_CHUNK))


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))


_Q = TypeVar("_Q", bound=Select[Any])


def _search(query: _Q, search: str | None) -> _Q:
    # No name or address holds a control character, so a cleaned term simply matches nothing
    # (instead of a NUL failing the query on PostgreSQL only).
    term = clean_text((search or "").strip())
    if not term:
        return query
    name_term = fold(term)
    email_term = unicodedata.normalize("NFKC", term).lower()
    return query.where(
        or_(
            User.username_key.contains(name_term, autoescape=True),
            User.email_key.contains(email_term, autoescape=True),
        )
    )


__all__ = [
    "AuditRecord",
    "NewUser",
    "RoleRecord",
    "TakenKeys",
    "UserRecord",
    "UserRepository",
    "UserStillReferenced",
    "guarded",
    "new_user",
]
