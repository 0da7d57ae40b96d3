"""Opaque refresh tokens: single use, rotated on every refresh, reuse ends the session.

Store layout (in the session store, beside the sessions)::

    r:<sha256>    live token -> {"sid", "uid"}; TTL = idle lifetime, capped at the
                  session's absolute end
    rs:<sha256>   spent token -> sid; kept for a full idle lifetime after it was spent, so a
                  replay is recognised as theft for as long as the token could have lived

Spending a token is one atomic step: ``add`` (set if absent) of its spent marker. Rotation
reads the live record, then adds the marker; of any number of concurrent refreshes with one
token, on any number of processes, exactly one adds it and every other one finds it present
and ends the whole session. The live record is deleted only after the marker exists, so a
refresh that finds the live record gone always finds the marker. Every backend (memory, SQL,
Redis standalone and Cluster) already makes ``add`` atomic and the contract suite proves it,
and the two keys are never written together, so no new store primitive (nor a Redis hash tag
tying them to one Cluster slot) is needed. Consuming the live record first instead (``pop``)
would leave a moment where a concurrent refresh finds neither key and takes the token for an
unknown one, letting the session live on.

Nothing is written for a token that is not live: unknown, expired or forged tokens cost a
read or two and leave no trace in the store.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import NoReturn

from bastion.clock import Clock, system_clock
from bastion.exceptions import TokenError
from bastion.sessions import Session, SessionManager
from bastion.stores.base import Store

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Record:
    """What the store keeps for a live token: its session and that session's user."""

    sid: str
    uid: int


def _record(data: bytes) -> _Record:
    """The live record; one that cannot be read is refused, never trusted."""
    try:
        fields = json.loads(data)
        return _Record(str(fields["sid"]), int(fields["uid"]))
    except (ValueError, TypeError, KeyError) as unreadable:
        raise TokenError("unreadable refresh token record") from unreadable


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
        live = await self.store.get(f"r:{digest}")
        if live is None:
            # The live record goes only after its spent marker exists: with neither, the
            # token was never issued or expired long ago.
            spent = await self.store.get(f"rs:{digest}")
            if spent is None:
                raise TokenError("unknown refresh token")
            await self._reused(spent.decode("ascii", "replace"))
        record = _record(live)
        if not await self.store.add(f"rs:{digest}", record.sid.encode(), ttl=self.ttl):
            await self._reused(record.sid)  # another refresh spent it first
        await self.store.delete(f"r:{digest}")
        session = await self.sessions.get(record.sid)
        if session is None or session.user_id != record.uid:
            raise TokenError("session has ended")
        session = await self.sessions.touch(session)
        new_token, lifetime = await self.issue(session)
        return Rotation(new_token, session, lifetime)

    async def _reused(self, session_key: str) -> NoReturn:
        await self.sessions.end(session_key)
        raise RefreshTokenReused(session_key)

    async def revoke(self, token: str) -> Session | None:
        """RFC 7009: end the session of a live refresh token; unknown tokens do nothing."""
        if not isinstance(token, str) or not _TOKEN.match(token):
            return None
        data = await self.store.pop(f"r:{_digest(token)}")
        if data is None:
            return None
        try:
            record = _record(data)
        except TokenError:
            return None
        session = await self.sessions.get(record.sid)
        if session is not None:
            await self.sessions.end(session.key)
        return session
