"""Opaque refresh tokens: single use, rotated on every refresh, reuse ends the session.

Store layout (in the session store, beside the sessions)::

    r:<sha256>    live token -> {"sid", "uid"}; TTL = idle lifetime, capped at the
                  session's absolute end
    rs:<sha256>   spent token -> sid; kept as long as a live token would have lived, so a
                  replay within that window is recognised as theft

Rotation takes the live record with the store's atomic ``pop``: of any number of
concurrent refreshes with one token exactly one gets the record; every other one finds the
token spent and ends the whole session, so two usable successors can never exist.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass

from bastion.clock import Clock, system_clock
from bastion.exceptions import TokenError
from bastion.sessions import Session, SessionManager
from bastion.stores.base import Store

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of a refresh: a new refresh token for a still-live session."""

    token: str
    session: Session
    expires_in: int


class RefreshTokenReused(TokenError):
    """A spent refresh token came back; its session has been ended."""

    def __init__(self, session_key: str) -> None:
        super().__init__("refresh token reused")
        self.session_key = session_key


class RefreshTokens:
    def __init__(
        self,
        store: Store,
        sessions: SessionManager,
        *,
        ttl: int,
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.ttl = ttl
        self.clock = clock

    async def issue(self, session: Session) -> tuple[str, int]:
        """A new refresh token for ``session``; returns (token, seconds it lives)."""
        lifetime = int(min(self.ttl, session.absolute_expires_at - self.clock()))
        if lifetime <= 0:
            raise TokenError("session has ended")
        token = secrets.token_urlsafe(32)
        record = json.dumps({"sid": session.key, "uid": session.user_id}).encode()
        await self.store.set(f"r:{_digest(token)}", record, ttl=lifetime)
        return token, lifetime

    async def rotate(self, token: str) -> Rotation:
        """Spend ``token`` and issue its successor; reuse of a spent token ends the session."""
        if not isinstance(token, str) or not _TOKEN.match(token):
            raise TokenError("malformed refresh token")
        digest = _digest(token)
        data = await self.store.pop(f"r:{digest}")
        if data is None:
            spent = await self.store.get(f"rs:{digest}")
            if spent is not None:
                key = spent.decode("ascii", "replace")
                await self.sessions.end(key)
                raise RefreshTokenReused(key)
            raise TokenError("unknown refresh token")
        record = json.loads(data)
        await self.store.set(f"rs:{digest}", record["sid"].encode(), ttl=self.ttl)
        session = await self.sessions.get(record["sid"])
        if session is None or session.user_id != record["uid"]:
            raise TokenError("session has ended")
        session = await self.sessions.touch(session)
        new_token, lifetime = await self.issue(session)
        return Rotation(new_token, session, lifetime)

    async def revoke(self, token: str) -> Session | None:
        """RFC 7009: end the session of a live refresh token; unknown tokens do nothing."""
        if not isinstance(token, str) or not _TOKEN.match(token):
            return None
        data = await self.store.pop(f"r:{_digest(token)}")
        if data is None:
            return None
        session = await self.sessions.get(json.loads(data)["sid"])
        if session is not None:
            await self.sessions.end(session.key)
        return session
