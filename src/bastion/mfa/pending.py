"""The pending state of a two-step sign-in: the password was right, the second factor is
still to come, and no session exists yet.

A pending sign-in is a record in the session store (shared by every process) under the
SHA-256 of a random 256-bit id; the client holds the id, signed with a timestamp
(:class:`~bastion.signing.TimestampSigner`, purpose ``bastion.mfa.pending``), so a forged,
foreign or stale token is refused before any store access. The record says who is signing
in, how ("pwd" so far), whether to remember the browser, where to go next, and to what the
state is bound:

* a browser's (``channel="web"``) is bound to the CSRF secret of the browser that typed the
  password (its pre-session, or the session it already held): the record keeps the secret's
  SHA-256 and the state is refused to any other browser, even one holding the token;
* an API client's (``channel="api"``, the token endpoint's ``mfa_token``) is bound to
  nothing but the token itself (the client has no cookie), and is never accepted by the
  other channel.

Usable once: a verification :meth:`claims <PendingSignIns.claim>` the record (an atomic
``pop``, so of concurrent attempts exactly one holds it) and either completes the sign-in
or, after a wrong code, :meth:`puts it back <PendingSignIns.release>` with its expiry
unchanged and one more wrong code counted. A wrong code therefore does not cost the user
their password step: the state lives until it expires (:data:`PENDING_TTL`, 5 minutes from
the password), until :data:`MAX_WRONG_CODES` wrong codes were typed into it, or until it
completes. Guessing is bounded anyway by the account's back-off, which every wrong code
feeds (:meth:`bastion.auth.Authenticator.check_second_factor`).

A core module: it imports neither FastAPI nor Starlette.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Literal

from bastion.clock import Clock, system_clock
from bastion.signing import BadSignature, TimestampSigner
from bastion.stores.base import Store

PENDING_TTL = 300
"""Seconds from the password to the second factor."""
MAX_WRONG_CODES = 5
"""Wrong second factors one pending state takes before it ends (the password is then needed
again)."""
PendingChannel = Literal["web", "api"]
_PREFIX = "mfa:pending:"
_PURPOSE = "bastion.mfa.pending"


def binding_of(csrf_secret: str) -> str:
    """What a browser's pending state keeps of the browser's CSRF secret."""
    return hashlib.sha256(csrf_secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    user_id: int
    channel: PendingChannel
    # RFC 8176 methods proved so far ("pwd").
    methods: tuple[str, ...]
    expires_at: float
    remember: bool = False
    next: str = "/"
    # SHA-256 of the browser's CSRF secret; "" for an API client's state.
    binding: str = ""
    wrong_codes: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PendingSignIn:
        """A record we wrote, or ValueError/TypeError (never half-trusted)."""
        fields = json.loads(data)
        if not isinstance(fields, dict):
            raise ValueError("pending record is not an object")
        methods = fields.get("methods")
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise ValueError("pending record has bad methods")
        fields["methods"] = tuple(methods)
        pending = cls(**fields)
        checks = (
            isinstance(pending.user_id, int) and not isinstance(pending.user_id, bool),
            pending.channel in ("web", "api"),
            isinstance(pending.expires_at, int | float) and math.isfinite(pending.expires_at),
            isinstance(pending.remember, bool),
            isinstance(pending.next, str) and isinstance(pending.binding, str),
            isinstance(pending.wrong_codes, int),
        )
        if not all(checks):
            raise ValueError("pending record has a bad field")
        return pending


class PendingSignIns:
    """Starts, claims and puts back pending sign-ins on the session store."""

    def __init__(
        self,
        store: Store,
        secret: bytes,
        fallbacks: Iterable[bytes] = (),
        *,
        clock: Clock = system_clock,
        ttl: int = PENDING_TTL,
        max_wrong_codes: int = MAX_WRONG_CODES,
    ) -> None:
        self.store = store
        self.clock = clock
        self.ttl = ttl
        self.max_wrong_codes = max_wrong_codes
        self._signer = TimestampSigner(secret, tuple(fallbacks), purpose=_PURPOSE, clock=clock)

    async def start(
        self,
        user_id: int,
        *,
        channel: PendingChannel,
        methods: Iterable[str],
        csrf_secret: str | None = None,
        remember: bool = False,
        next: str = "/",
    ) -> str:
        """Record a pending sign-in; returns the token its client holds. A browser's
        (``channel="web"``) needs the browser's ``csrf_secret``."""
        if (channel == "web") != (csrf_secret is not None):
            raise ValueError("a browser's pending sign-in is bound to its CSRF secret, only")
        raw_id = secrets.token_urlsafe(32)
        pending = PendingSignIn(
            user_id=user_id,
            channel=channel,
            methods=tuple(methods),
            expires_at=self.clock() + self.ttl,
            remember=remember,
            next=next,
            binding=binding_of(csrf_secret) if csrf_secret is not None else "",
        )
        await self.store.set(_key(raw_id), pending.to_json(), ttl=self.ttl)
        return self._signer.sign(raw_id.encode("ascii"))

    async def peek(
        self, token: str | None, *, channel: PendingChannel, csrf_secret: str | None = None
    ) -> PendingSignIn | None:
        """The live pending sign-in of ``token`` for this client, left in place (to show the
        form); None for anything else."""
        raw_id = self._raw_id(token)
        if raw_id is None:
            return None
        return self._for_client(await self.store.get(_key(raw_id)), channel, csrf_secret)

    async def claim(
        self, token: str | None, *, channel: PendingChannel, csrf_secret: str | None = None
    ) -> PendingSignIn | None:
        """Take the pending sign-in of ``token`` out of the store to verify a factor: of
        concurrent claims at most one gets it. Its owner completes the sign-in or calls
        :meth:`release`. None when there is nothing live for this client, in which case
        nothing is taken: another browser holding a stolen token cannot end the state."""
        raw_id = self._raw_id(token)
        if raw_id is None:
            return None
        if self._for_client(await self.store.get(_key(raw_id)), channel, csrf_secret) is None:
            return None
        return self._for_client(await self.store.pop(_key(raw_id)), channel, csrf_secret)

    async def release(self, token: str, pending: PendingSignIn, *, wrong_code: bool) -> bool:
        """Put a claimed pending sign-in back after its factor failed (``wrong_code``) or
        could not be judged (throttled, an outage). False when it is over instead: expired,
        or out of wrong codes."""
        raw_id = self._raw_id(token)
        if raw_id is None:
            return False
        if wrong_code:
            pending = replace(pending, wrong_codes=pending.wrong_codes + 1)
        left = pending.expires_at - self.clock()
        if left <= 0 or pending.wrong_codes >= self.max_wrong_codes:
            return False
        return await self.store.add(_key(raw_id), pending.to_json(), ttl=left)

    async def discard(self, token: str | None) -> None:
        """End a pending sign-in (the client signed in another way, or gave up)."""
        raw_id = self._raw_id(token)
        if raw_id is not None:
            await self.store.delete(_key(raw_id))

    def _raw_id(self, token: str | None) -> str | None:
        if not token:
            return None
        try:
            raw = self._signer.unsign(token, max_age=self.ttl)
        except BadSignature:
            return None
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            return None

    def _for_client(
        self, data: bytes | None, channel: PendingChannel, csrf_secret: str | None
    ) -> PendingSignIn | None:
        if data is None:
            return None
        try:
            pending = PendingSignIn.from_json(data)
        except (ValueError, TypeError, RecursionError):
            return None
        if pending.channel != channel or pending.expires_at <= self.clock():
            return None
        if channel == "web" and not _same_browser(pending, csrf_secret):
            return None
        return pending


def _same_browser(pending: PendingSignIn, csrf_secret: str | None) -> bool:
    if csrf_secret is None:
        return False
    return secrets.compare_digest(pending.binding, binding_of(csrf_secret))


def _key(raw_id: str) -> str:
    return _PREFIX + hashlib.sha256(raw_id.encode("ascii")).hexdigest()
