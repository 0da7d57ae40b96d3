"""Server-side sessions: creation, lookup, activity, timeouts and ending.

The browser holds a 256-bit random id; the store holds only its SHA-256 (the session
*key*), so a leaked store dump cannot be replayed as cookies. The key doubles as the public
session id shown in device lists and carried in access tokens' ``sid`` claim: it names a
session without granting it.

Store layout (all under the session store's namespace)::

    s:<key>               JSON record, TTL = time until idle or absolute end
    {u:<user id>}:index   set of the user's session keys (for listing and ending them all)
    all                   set of every session key (for the admin list; cleaned lazily)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from bastion.clock import Clock, system_clock
from bastion.csrf import new_csrf_secret
from bastion.stores.base import Store

SessionKind = Literal["browser", "api"]
# Used with fullmatch: "$" would also match before a trailing newline.
_RAW_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_KEY = re.compile(r"[0-9a-f]{64}")
MAX_USER_AGENT = 512


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """Timeouts in seconds; see the matching settings."""

    idle_timeout: int = 1800
    absolute_timeout: int = 43_200
    remember_me_timeout: int = 2_592_000
    remember_me_idle_timeout: int = 1_209_600
    api_idle_timeout: int = 1_209_600
    touch_interval: int = 60
    max_per_user: int = 0

    def idle_timeout_for(self, kind: SessionKind, *, remember: bool) -> int:
        """API sessions idle as long as a refresh token lives; "remember me" browser
        sessions have their own, longer, idle timeout."""
        if kind == "api":
            return self.api_idle_timeout
        return self.remember_me_idle_timeout if remember else self.idle_timeout


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in session. ``key`` is the stored hash of the browser's id."""

    key: str
    user_id: int
    created_at: float
    last_seen_at: float
    absolute_expires_at: float
    idle_timeout: int
    csrf_secret: str
    # A snapshot of who the user is, so an authenticated request costs one store read.
    # Roles never change under a live session: a role change ends the user's sessions, or
    # rotates the one making it (Accounts.set_roles); `update_user` keeps names current.
    username: str = ""
    email: str | None = None
    email_verified: bool = False
    roles: tuple[str, ...] = ()
    remember: bool = False
    kind: SessionKind = "browser"
    ip: str | None = None
    user_agent: str | None = None
    # How the user proved who they are (RFC 8176 values: "pwd", "otp", "hwk", "swk",
    # "mfa", ...), and when they last did (the sign-in, or a later re-authentication):
    # sensitive actions need ``auth_time`` within the re-authentication window.
    amr: tuple[str, ...] = ()
    auth_time: float = 0.0
    # A session that may do nothing but set up a second factor (BASTION_MFA requires one
    # of this user, who has none yet): the dependencies refuse it everywhere else, and
    # adding a factor rotates it into a full session (bastion.fastapi.two_step.enrolled).
    mfa_enrolment: bool = False
    # The user's own choice of language (contract 6.5), None until they make one.
    language: str | None = None

    @property
    def idle_expires_at(self) -> float:
        return self.last_seen_at + self.idle_timeout

    @property
    def expires_at(self) -> float:
        """When this session ends if nothing else happens."""
        return min(self.idle_expires_at, self.absolute_expires_at)

    @property
    def ref(self) -> str:
        """A short reference for logs and the audit trail."""
        return session_ref(self.key)

    def token_claims(self) -> dict[str, Any]:
        """What an access token of this session says of its sign-in (RFC 8176 ``amr``,
        OpenID ``auth_time``)."""
        return {"amr": list(self.amr), "auth_time": int(self.auth_time)}

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Session:
        """A record read back from the store. Raises ValueError or TypeError for anything
        that is not a record we wrote (wrong shape or types), so a corrupted record is
        never half-trusted, nor able to raise elsewhere later."""
        try:
            fields = json.loads(data)
        except RecursionError:
            raise ValueError("session record nested too deeply") from None
        if not isinstance(fields, dict):
            raise ValueError("session record is not an object")
        roles = fields.get("roles", ())
        if not isinstance(roles, list | tuple) or not all(isinstance(r, str) for r in roles):
            raise ValueError("session record has bad roles")
        fields["roles"] = tuple(roles)
        amr = fields.get("amr", ())
        if not isinstance(amr, list | tuple) or not all(isinstance(m, str) for m in amr):
            raise ValueError("session record has bad methods")
        fields["amr"] = tuple(amr)
        # Records written before re-authentication existed: their sign-in is their start.
        fields.setdefault("auth_time", fields.get("created_at"))
        session = cls(**fields)
        session._check_types()
        return session

    def _check_types(self) -> None:
        times = (
            self.created_at,
            self.last_seen_at,
            self.absolute_expires_at,
            self.idle_timeout,
            self.auth_time,
        )
        if not all(_is_number(t) and math.isfinite(t) for t in times):
            raise ValueError("session record has a bad time")
        if not (_is_number(self.user_id) and isinstance(self.user_id, int)):
            raise ValueError("session record has a bad user id")
        if not (isinstance(self.key, str) and is_session_key(self.key)):
            raise ValueError("session record has a bad key")
        if not (isinstance(self.csrf_secret, str) and isinstance(self.username, str)):
            raise ValueError("session record has a bad string")
        for name in ("email", "ip", "user_agent", "language"):
            if not isinstance(getattr(self, name, None), str | None):
                raise ValueError("session record has a bad string")
        flags = (self.remember, self.email_verified, self.mfa_enrolment)
        if not all(isinstance(flag, bool) for flag in flags):
            raise ValueError("session record has a bad flag")
        if self.kind not in ("browser", "api"):
            raise ValueError("session record has a bad flag")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def session_ref(key: str) -> str:
    """The short reference of the session stored under ``key`` (never enough to use it)."""
    return key[:12]


def session_key(raw_id: str) -> str:
    """The stored form of a browser's session id."""
    return hashlib.sha256(raw_id.encode("ascii")).hexdigest()


def is_session_key(value: str) -> bool:
    return bool(_KEY.fullmatch(value))


@functools.lru_cache(maxsize=1024)
def _decode(data: bytes) -> Session:
    """:meth:`Session.from_json`, remembered by the exact bytes read: a busy session is read
    on every request but written at most once per touch interval, and a Session is
    immutable, so the same record need not be parsed and checked again. Errors are not
    remembered (a bad record raises every time)."""
    return Session.from_json(data)


def _index(user_id: int) -> str:
    return f"{{u:{user_id}}}:index"


class SessionManager:
    """Creates, finds, refreshes and ends sessions on any :class:`Store`."""

    def __init__(
        self, store: Store, policy: SessionPolicy | None = None, clock: Clock = system_clock
    ) -> None:
        self.store = store
        self.policy = policy or SessionPolicy()
        self.clock = clock

    # ---- creation ---------------------------------------------------------------

    async def create(
        self,
        user_id: int,
        *,
        username: str = "",
        email: str | None = None,
        email_verified: bool = False,
        roles: Iterable[str] = (),
        remember: bool = False,
        kind: SessionKind = "browser",
        ip: str | None = None,
        user_agent: str | None = None,
        replaces: str | None = None,
        amr: Iterable[str] = ("pwd",),
        mfa_enrolment: bool = False,
        language: str | None = None,
    ) -> tuple[str, Session]:
        """Start a session with a brand-new id; returns (raw id for the cookie, session).

        ``replaces`` is the key of a session this browser held before (logging in while
        signed in); it ends, so a login never keeps an old id alive. ``amr`` says how the
        user signed in (RFC 8176 method names); the sign-in is also the session's first
        authentication (``auth_time``).
        """
        if replaces:
            await self.end(replaces)
        now = self.clock()
        policy = self.policy
        lifetime = policy.remember_me_timeout if remember else policy.absolute_timeout
        raw_id = secrets.token_urlsafe(32)
        session = Session(
            key=session_key(raw_id),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            absolute_expires_at=now + lifetime,
            idle_timeout=policy.idle_timeout_for(kind, remember=remember),
            csrf_secret=new_csrf_secret(),
            username=username,
            email=email,
            email_verified=email_verified,
            roles=tuple(sorted(roles)),
            remember=remember,
            kind=kind,
            ip=ip,
            user_agent=(user_agent or "")[:MAX_USER_AGENT] or None,
            amr=tuple(amr),
            auth_time=now,
            mfa_enrolment=mfa_enrolment,
            language=language,
        )
        # Index first: a crash between the writes leaves a dangling index entry (cleaned
        # lazily), never a live session that "sign out everywhere" cannot find.
        await self.store.sadd(_index(user_id), session.key)
        await self.store.sadd("all", session.key)
        await self._save(session, new=True)
        if policy.max_per_user:
            await self._enforce_limit(user_id, keep=session.key)
        return raw_id, session

    async def rotate(
        self, session: Session, *, roles: Iterable[str] | None = None, **changes: Any
    ) -> tuple[str, Session] | None:
        """The same session under a new id and CSRF secret (after a privilege change),
        holding ``roles`` when given and the other field ``changes`` (e.g. ``amr``). None
        when the session ended meanwhile: a revoked session is never renewed."""
        if not await self.end(session.key):
            return None
        raw_id = secrets.token_urlsafe(32)
        renewed = replace(
            session,
            key=session_key(raw_id),
            csrf_secret=new_csrf_secret(),
            last_seen_at=self.clock(),
            roles=session.roles if roles is None else tuple(sorted(roles)),
            **changes,
        )
        await self.store.sadd(_index(session.user_id), renewed.key)
        await self.store.sadd("all", renewed.key)
        if not await self._save(renewed, new=True):
            return None  # past its absolute end: nothing to renew
        return raw_id, renewed

    # ---- lookup -----------------------------------------------------------------

    async def load(self, raw_id: str | None) -> Session | None:
        """The live session for a browser's id, or None. Ids we could not have issued are
        refused before any store access."""
        if not raw_id or not _RAW_ID.fullmatch(raw_id):
            return None
        return await self.get(session_key(raw_id))

    async def get(self, key: str) -> Session | None:
        """The live session stored under ``key`` (a public session id), or None."""
        if not is_session_key(key):
            return None
        data = await self.store.get(f"s:{key}")
        if data is None:
            return None
        try:
            session = _decode(data)
        except (ValueError, TypeError):
            # A record we cannot read is treated as absent, never trusted.
            return None
        if session.key != key:
            return None
        if session.expires_at <= self.clock():
            await self.end(key)
            return None
        return session

    async def touch(self, session: Session) -> Session:
        """Record activity, writing at most once per :meth:`touch_interval`."""
        now = self.clock()
        if now - session.last_seen_at < self.touch_interval(session):
            return session
        touched = replace(session, last_seen_at=now)
        await self._save(touched)
        return touched

    def touch_interval(self, session: Session) -> float:
        """Seconds between two last-seen writes of ``session``: the configured interval,
        but never more than a quarter of the session's idle timeout. The idle clock runs
        from the last write, so activity then always restarts it with at least three
        quarters of it left: a session (or refresh chain) in use never expires, whatever
        the settings."""
        return min(self.policy.touch_interval, session.idle_timeout / 4)

    async def reauthenticated(self, session: Session, methods: Iterable[str]) -> Session:
        """The user proved who they are again in ``session`` (by ``methods``): restarts the
        re-authentication window and adds the methods to the session's ``amr``."""
        amr = tuple(dict.fromkeys((*session.amr, *methods)))
        return await self.update(session, auth_time=self.clock(), amr=amr)

    async def update(self, session: Session, **changes: Any) -> Session:
        changed = replace(session, **changes)
        await self._save(changed)
        return changed

    async def update_user(
        self,
        user_id: int,
        *,
        username: str | None = None,
        roles: Iterable[str] | None = None,
        email: str | None = None,
        email_verified: bool | None = None,
        language: str | None = None,
    ) -> int:
        """Refresh the user snapshot in every live session of the user; returns how many."""
        changes: dict[str, Any] = {}
        if language is not None:
            changes["language"] = language
        if username is not None:
            changes["username"] = username
        if roles is not None:
            changes["roles"] = tuple(sorted(roles))
        if email is not None:
            changes["email"] = email
        if email_verified is not None:
            changes["email_verified"] = email_verified
        sessions = await self.list_for_user(user_id)
        for session in sessions:
            await self.update(session, **changes)
        return len(sessions)

    async def list_for_user(self, user_id: int) -> list[Session]:
        """The user's live sessions, newest first; drops dead entries from the index."""
        keys = await self.store.smembers(_index(user_id))
        live, dead = await self._resolve(keys)
        if dead:
            await self.store.srem(_index(user_id), *dead)
        return sorted(live, key=lambda s: s.created_at, reverse=True)

    async def list_all(self) -> list[Session]:
        """Every live session (administration), newest first."""
        keys = await self.store.smembers("all")
        live, dead = await self._resolve(keys)
        if dead:
            await self.store.srem("all", *dead)
        return sorted(live, key=lambda s: s.created_at, reverse=True)

    # ---- ending -----------------------------------------------------------------

    async def end(self, key: str) -> bool:
        """End one session; True when it was live."""
        if not is_session_key(key):
            return False
        data = await self.store.pop(f"s:{key}")
        await self.store.srem("all", key)
        if data is None:
            return False
        with contextlib.suppress(ValueError, TypeError):
            await self.store.srem(_index(Session.from_json(data).user_id), key)
        return True

    async def end_all_for_user(self, user_id: int, *, keep: str | None = None) -> list[str]:
        """End every session of the user except ``keep``; returns the ended keys."""
        keys = await self.store.smembers(_index(user_id))
        ended = []
        for key in keys:
            if key != keep and await self.end(key):
                ended.append(key)
        return ended

    # ---- internals --------------------------------------------------------------

    async def _save(self, session: Session, *, new: bool = False) -> bool:
        """Write a session; an existing one only while it is still stored, so a write-back
        racing a revocation can never bring the session back. False when it was gone."""
        ttl = session.expires_at - self.clock()
        if ttl <= 0:
            await self.end(session.key)
            return False
        if new:
            await self.store.set(f"s:{session.key}", session.to_json(), ttl=ttl)
            return True
        return await self.store.replace(f"s:{session.key}", session.to_json(), ttl=ttl)

    async def _resolve(self, keys: Iterable[str]) -> tuple[list[Session], list[str]]:
        live: list[Session] = []
        dead: list[str] = []
        for key in keys:
            session = await self.get(key)
            if session is None:
                dead.append(key)
            else:
                live.append(session)
        return live, dead

    async def _enforce_limit(self, user_id: int, *, keep: str) -> None:
        """End the oldest sessions beyond the limit, never ``keep`` (the one just created:
        with equal ``created_at`` the sort alone could pick it)."""
        others = [s for s in await self.list_for_user(user_id) if s.key != keep]
        for old in others[max(self.policy.max_per_user - 1, 0) :]:
            await self.end(old.key)
