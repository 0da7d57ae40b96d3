"""Account recovery by e-mail: password-reset, verification and address-change links.

A link carries a token ``b64(payload) "." b64(mac)`` (base64url, no padding, about 70
characters). The payload names its kind, the user id, the time it was made and, for an
address change, the new address; the MAC (:class:`bastion.signing.Signer`, one purpose key
per kind, over the current and fallback secrets) also covers a *fingerprint* of the
account: its password hash, address, verification time and active flag (and, for a reset,
its last sign-in, as Django's ``PasswordResetTokenGenerator`` does). Nothing about a token
is stored until it is used, yet it dies as soon as any of those change: a new password, a
new address, a verification, a disabled account, or (reset links) a sign-in. It also
expires ``BASTION_EMAIL_TOKEN_TTL`` seconds after it was made.

Every link works once: using one first adds its spent marker (an atomic ``add`` of
``ls:<sha256 of the token>``, with a TTL that outlives the token, in the session store, which
every process shares), as :mod:`bastion.refresh` spends refresh tokens; of two concurrent
uses exactly one gets through.

Tokens are secrets: they are never logged, never put in the audit trail, and
:class:`TokenPathFilter` hides them in access logs.

Requests for reset links answer the same for every address: :meth:`Recovery.request_reset`
(the lookup, the token and the mail) runs in a task of its own after the response, so
neither the answer nor its timing depends on the account. They are throttled per client
address (``BASTION_PASSWORD_RESET_IP_LIMIT``, answered 429: that says nothing about
accounts) and per address asked for (``BASTION_EMAIL_LINK_LIMIT``: the same answer, but no
mail, so no inbox can be flooded).

This is a core module: it imports neither FastAPI nor Starlette.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bastion.accounts import Accounts
from bastion.clock import Clock, system_clock
from bastion.exceptions import BastionError, RateLimited, StoreUnavailable, UserError
from bastion.i18n import lazy
from bastion.ratelimit import AddressLimit, describe_wait
from bastion.signing import Signer
from bastion.stores.base import Store
from bastion.users.models import normalize_email
from bastion.users.repository import UserRecord, UserRepository

log = logging.getLogger("bastion.security")

LinkKind = Literal["reset", "verify", "change"]
VerificationMode = Literal["off", "optional", "required"]

# The letter each kind's payload starts with.
_KIND_LETTER: dict[LinkKind, str] = {"reset": "r", "verify": "v", "change": "c"}
_LETTER_KIND: dict[str, LinkKind] = {letter: kind for kind, letter in _KIND_LETTER.items()}
_TOKEN = re.compile(r"[A-Za-z0-9_-]{4,600}\.[A-Za-z0-9_-]{43}")
_PAYLOAD = re.compile(r"([rvc])\.([1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,15})(?:\.(.+))?")
# A token made up to this many seconds "in the future" (clock skew between processes) is
# accepted; beyond it, refused.
CLOCK_LEEWAY = 60
# How long a browser keeps a reset link it followed (see Recovery.hold), at most.
HOLD_SECONDS = 900

# The mail templates (templates/mail/<name>.subject.txt, .txt, .html).
ACCOUNT_DISABLED = lazy("The account is disabled. Enable it first.")
MAIL_RESET = "password_reset"
MAIL_VERIFY = "email_verify"
MAIL_CHANGE = "email_change"
MAIL_CHANGED = "email_changed"

# Paths whose last segment is a token, and what access logs show instead.
TOKEN_PATHS = ("/password/reset/", "/email/verify/")
REDACTED = "[token]"


class InvalidLink(BastionError):
    """A link's token is malformed, forged, expired, already used or no longer matches the
    account. One error for all of them: a page says only that the link cannot be used."""

    def __init__(self, reason: str) -> None:
        self.reason = reason  # for logs and tests, never shown
        super().__init__("this link is invalid, expired or already used")


class EmailNotVerified(BastionError):
    """``BASTION_EMAIL_VERIFICATION=required`` and the account's address is not verified:
    no session until it is. Raised only after the password was found correct."""

    def __init__(self, user: UserRecord) -> None:
        self.user = user
        super().__init__("the e-mail address of this account is not verified yet")


class MailSender(Protocol):
    """What recovery needs of the mailer (:class:`bastion.mail.Mailer`)."""

    async def send(
        self,
        template: str,
        *,
        to: str,
        context: Mapping[str, Any],
        language: str | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a token says, before it is checked against the account."""

    kind: LinkKind
    user_id: int
    issued_at: int
    new_email: str | None = None


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidLink("malformed") from None
    if _b64encode(data) != text:  # one encoding per token
        raise InvalidLink("malformed")
    return data


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None else ""


def fingerprint(kind: LinkKind, user: UserRecord) -> bytes:
    """The account state a link of ``kind`` is bound to: any change kills the link."""
    state: list[Any] = [
        user.id,
        user.password_hash,
        normalize_email(user.email) if user.email else "",
        _iso(user.email_verified_at),
        user.is_active,
    ]
    if kind == "reset":
        state.append(_iso(user.last_login_at))
    return json.dumps(state, separators=(",", ":")).encode("utf-8")


class LinkTokens:
    """Makes and checks link tokens, and spends them once, in ``store``."""

    def __init__(
        self,
        secret: bytes,
        fallbacks: list[bytes],
        store: Store,
        *,
        ttl: int,
        clock: Clock = system_clock,
    ) -> None:
        self._signers = {
            kind: Signer(secret, fallbacks, purpose=f"bastion.recovery.{kind}")
            for kind in _KIND_LETTER
        }
        self.store = store
        self.ttl = ttl
        self.clock = clock

    def __repr__(self) -> str:
        return f"LinkTokens(ttl={self.ttl})"

    def make(self, kind: LinkKind, user: UserRecord, *, new_email: str | None = None) -> str:
        """A token for ``user``, valid for ``ttl`` seconds while the account stays as it is."""
        parts = [_KIND_LETTER[kind], str(user.id), str(int(self.clock()))]
        if kind == "change":
            if not new_email:
                raise ValueError("an address-change token needs the new address")
            parts.append(new_email)
        payload = ".".join(parts).encode("utf-8")
        mac = self._signers[kind].mac(payload + b"\0" + fingerprint(kind, user))
        return f"{_b64encode(payload)}.{_b64encode(mac)}"

    def read(self, token: str, kinds: tuple[LinkKind, ...]) -> LinkClaims:
        """The claims of a well-formed, unexpired token of one of ``kinds`` (not yet
        checked against the account: see :meth:`check`)."""
        if not isinstance(token, str) or not token.isascii() or not _TOKEN.fullmatch(token):
            raise InvalidLink("malformed")
        payload_text, _, _ = token.partition(".")
        try:
            payload = _b64decode(payload_text).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidLink("malformed") from None
        match = _PAYLOAD.fullmatch(payload)
        if match is None:
            raise InvalidLink("malformed")
        letter, user_id, issued, new_email = match.groups()
        kind = _LETTER_KIND[letter]
        if kind not in kinds or (kind == "change") != (new_email is not None):
            raise InvalidLink("wrong kind")
        age = self.clock() - int(issued)
        if age > self.ttl:
            raise InvalidLink("expired")
        if age < -CLOCK_LEEWAY:
            raise InvalidLink("issued in the future")
        return LinkClaims(kind, int(user_id), int(issued), new_email)

    def check(self, token: str, claims: LinkClaims, user: UserRecord) -> None:
        """Raise :class:`InvalidLink` unless ``token`` was made for ``user`` as the account
        is now (``claims`` from :meth:`read`)."""
        payload_text, _, mac_text = token.partition(".")
        payload = _b64decode(payload_text)
        mac = _b64decode(mac_text)
        signed = payload + b"\0" + fingerprint(claims.kind, user)
        if user.id != claims.user_id or not self._signers[claims.kind].verify_mac(signed, mac):
            raise InvalidLink("forged, or the account changed since")

    async def spend(self, token: str, claims: LinkClaims) -> None:
        """Mark ``token`` used; :class:`InvalidLink` when it was already (atomic: of any
        number of concurrent uses on any number of processes, one gets through)."""
        lifetime = max(1, claims.issued_at + self.ttl + CLOCK_LEEWAY - int(self.clock()))
        if not await self.store.add(f"ls:{_digest(token)}", b"1", ttl=lifetime):
            raise InvalidLink("already used")

    async def is_spent(self, token: str) -> bool:
        return await self.store.get(f"ls:{_digest(token)}") is not None

    async def unspend(self, token: str) -> None:
        """Give a token back whose use could not be completed (an outage)."""
        await self.store.delete(f"ls:{_digest(token)}")


class _Wait:
    """How long a link works, in words of the language its mail is written in (the
    recipient's own choice, which may not be the request's)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __str__(self) -> str:
        return describe_wait(self.seconds)


class Recovery:
    """Password resets, address verification and address changes, by mailed links.

    ``link_limit`` makes the per-account (or per-address) limit of one kind of mail;
    ``request_limit`` is the per-client limit of reset requests. ``verification`` is
    ``BASTION_EMAIL_VERIFICATION``.
    """

    def __init__(
        self,
        *,
        users: UserRepository,
        accounts: Accounts,
        tokens: LinkTokens,
        mailer: MailSender,
        store: Store,
        request_limit: AddressLimit,
        link_limits: Mapping[LinkKind, AddressLimit],
        verification: VerificationMode = "optional",
    ) -> None:
        self.users = users
        self.accounts = accounts
        self.tokens = tokens
        self.mailer = mailer
        self.store = store
        self.request_limit = request_limit
        self.link_limits = dict(link_limits)
        self.verification = verification
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Recovery(verification={self.verification!r}, ttl={self.tokens.ttl})"

    # ---- links ----------------------------------------------------------------------

    @staticmethod
    def link(base_url: str, kind: LinkKind, token: str) -> str:
        """The address of a link: ``<base>/password/reset/<token>`` for a reset,
        ``<base>/email/verify/<token>`` for the other kinds."""
        path = TOKEN_PATHS[0] if kind == "reset" else TOKEN_PATHS[1]
        return f"{base_url.rstrip('/')}{path}{token}"

    async def reset_link(self, user: UserRecord, base_url: str, **context: Any) -> str:
        """A password-reset link for an operator to pass on (``bastion users reset-link``);
        audited as ``password.reset_link_made``, without the link."""
        if not user.is_active:
            raise UserError(ACCOUNT_DISABLED)
        link = self.link(base_url, "reset", self.tokens.make("reset", user))
        await self.accounts.audit.record(
            "password.reset_link_made", user_id=user.id, username=user.username, **context
        )
        return link

    def _valid_for(self) -> _Wait:
        return _Wait(self.tokens.ttl)

    async def _limit(self, kind: LinkKind, who: str) -> bool:
        """Count one mail of ``kind`` for ``who``; False when over the limit."""
        try:
            await self.link_limits[kind].hit(who)
        except RateLimited:
            return False
        return True

    async def _user_for(
        self, token: str, kinds: tuple[LinkKind, ...]
    ) -> tuple[LinkClaims, UserRecord]:
        claims = self.tokens.read(token, kinds)
        user = await self.users.get_by_id(claims.user_id)
        if user is None:
            raise InvalidLink("no such user")
        self.tokens.check(token, claims, user)
        if not user.is_active:
            raise InvalidLink("account disabled")
        return claims, user

    # ---- password reset ---------------------------------------------------------------

    async def check_request(self, ip: str | None) -> None:
        """The per-client limit on reset requests: raises ``RateLimited`` (429) past it.
        It counts requests, whatever address they name, so it tells nothing about any."""
        await self.request_limit.hit(ip)

    def request_reset(
        self, email: str, *, base_url: str | None, ip: str | None, user_agent: str | None
    ) -> None:
        """Handle a request for a reset link in a task of its own, after the caller has
        answered: whether the address belongs to an account, and what that costs, never
        reaches the requester. Nothing is raised."""
        self._spawn(self._request_reset(email, base_url=base_url, ip=ip, user_agent=user_agent))

    async def _request_reset(
        self, email: str, *, base_url: str | None, ip: str | None, user_agent: str | None
    ) -> None:
        try:
            key = normalize_email(email)
        except UserError:
            return  # no account has such an address
        address_ref = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        try:
            if not await self._limit("reset", f"address {address_ref}"):
                log.info("password reset mail for address ref %s not sent: limit", address_ref)
                return
            user = await self.users.get_by_email(key)
            if user is None or not user.is_active or user.email is None:
                return
            if base_url is None:
                log.error("password reset mail not sent: BASTION_PUBLIC_URL is not set")
                return
            await self.send_reset(user, base_url=base_url, ip=ip, user_agent=user_agent)
        except StoreUnavailable as error:
            log.warning("password reset request not handled: %s unavailable", error.component)

    async def send_reset(
        self,
        user: UserRecord,
        *,
        base_url: str,
        actor_id: int | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Mail ``user`` a reset link (a request's, or an administrator's ``actor_id``)."""
        if user.email is None:
            raise UserError(lazy("The account has no e-mail address."))
        if not user.is_active:
            raise UserError(ACCOUNT_DISABLED)
        link = self.link(base_url, "reset", self.tokens.make("reset", user))
        await self.mailer.send(
            MAIL_RESET,
            to=user.email,
            context={"username": user.username, "link": link, "valid_for": self._valid_for()},
            language=user.language,
        )
        await self.accounts.audit.record(
            "password.reset_link_sent",
            user_id=user.id,
            username=user.username,
            actor_id=actor_id,
            ip=ip,
            user_agent=user_agent,
        )

    async def check_reset(self, token: str) -> UserRecord:
        """The user a usable reset token is for, or :class:`InvalidLink`."""
        _, user = await self._user_for(token, ("reset",))
        if await self.tokens.is_spent(token):
            raise InvalidLink("already used")
        return user

    async def reset_password(
        self, token: str, new_password: str, confirm: str | None = None, **context: Any
    ) -> UserRecord:
        """Set a new password with a reset token: the policy first (``UserError``, and the
        link still works), then the token is spent and every session and refresh token of
        the user ends, with their login back-off (:meth:`Accounts.change_password`)."""
        claims, user = await self._user_for(token, ("reset",))
        self.accounts.check_new_password(new_password, confirm, user.username)
        await self.tokens.spend(token, claims)
        try:
            await self.accounts.change_password(
                user.id, new_password, audit_detail={"via": "reset link"}, **context
            )
        except BaseException:
            with contextlib.suppress(StoreUnavailable):
                await self.tokens.unspend(token)
            raise
        return user

    # ---- a browser holding a followed reset link ----------------------------------------

    async def hold(self, binding: str, token: str) -> None:
        """Keep ``token`` server-side for the browser ``binding`` names (a secret only that
        browser holds), so that the form's address carries no token."""
        key = f"lh:{hashlib.sha256(binding.encode('utf-8')).hexdigest()}"
        await self.store.set(key, token.encode("ascii"), ttl=HOLD_SECONDS)

    async def held(self, binding: str) -> str | None:
        key = f"lh:{hashlib.sha256(binding.encode('utf-8')).hexdigest()}"
        value = await self.store.get(key)
        return value.decode("ascii", "replace") if value is not None else None

    async def release(self, binding: str) -> None:
        await self.store.delete(f"lh:{hashlib.sha256(binding.encode('utf-8')).hexdigest()}")

    # ---- address verification ------------------------------------------------------------

    def holds_back(self, user: UserRecord) -> bool:
        """Whether ``user`` may not get a session yet: verification is required and the
        account's address is not verified. (An account without an address, which only an
        operator can make, has nothing to verify.)"""
        return (
            self.verification == "required"
            and user.email is not None
            and user.email_verified_at is None
        )

    async def require_verified(
        self, user: UserRecord, *, ip: str | None, user_agent: str | None, channel: str
    ) -> None:
        """Refuse a session to ``user`` while :meth:`holds_back` (``EmailNotVerified``)."""
        if self.holds_back(user):
            await self.accounts.audit.record(
                "login.unverified",
                user_id=user.id,
                username=user.username,
                ip=ip,
                user_agent=user_agent,
                detail={"channel": channel},
            )
            raise EmailNotVerified(user)

    async def send_verification(
        self, user: UserRecord, *, base_url: str | None, throttled: bool = True
    ) -> bool:
        """Mail ``user`` a link that verifies their current address. False when there is
        nothing to do (no address, verified already, verification off, no public URL).
        ``RateLimited`` past the per-account limit when ``throttled``."""
        if self.verification == "off" or user.email is None or user.email_verified_at:
            return False
        if base_url is None:
            log.error("verification mail not sent: BASTION_PUBLIC_URL is not set")
            return False
        if throttled:
            await self.link_limits["verify"].hit(f"user {user.id}")
        link = self.link(base_url, "verify", self.tokens.make("verify", user))
        await self.mailer.send(
            MAIL_VERIFY,
            to=user.email,
            context={"username": user.username, "link": link, "valid_for": self._valid_for()},
            language=user.language,
        )
        return True

    def send_verification_later(self, user: UserRecord, *, base_url: str | None) -> None:
        """:meth:`send_verification` (counted against the limit) after the response."""

        async def send() -> None:
            try:
                with contextlib.suppress(RateLimited):
                    await self.send_verification(user, base_url=base_url)
            except StoreUnavailable as error:
                log.warning("verification mail not sent: %s unavailable", error.component)

        self._spawn(send())

    async def confirm_address(self, token: str, **context: Any) -> tuple[LinkKind, UserRecord]:
        """Follow a verification or address-change link: the account's address is verified,
        or becomes the new, confirmed one (its old address is told). Returns the kind and
        the account as it was. ``InvalidLink``, or ``UserError`` when the new address went
        to another account meanwhile."""
        claims, user = await self._user_for(token, ("verify", "change"))
        await self.tokens.spend(token, claims)
        try:
            if claims.kind == "verify":
                done = user.email is not None and await self.accounts.verify_email(user, **context)
            else:
                assert claims.new_email is not None
                done = await self.accounts.change_email(user, claims.new_email, **context)
        except StoreUnavailable:
            with contextlib.suppress(StoreUnavailable):
                await self.tokens.unspend(token)
            raise
        if not done:
            raise InvalidLink("the account changed meanwhile")
        if claims.kind == "change" and user.email is not None:
            await self.mailer.send(
                MAIL_CHANGED,
                to=user.email,
                context={
                    "username": user.username,
                    "old_email": user.email,
                    "new_email": claims.new_email,
                },
                language=user.language,
            )
        return claims.kind, user

    # ---- address change ---------------------------------------------------------------

    def check_new_address(self, user: UserRecord, new_email: str) -> str:
        """``new_email`` as it will be kept, or ``UserError`` (not an address, or the
        account's own already). Whether another account has it is not told here: that
        would let anyone signed in probe addresses. The link goes out either way, and
        following it says so."""
        display = new_email.strip()
        key = normalize_email(display)
        if user.email is not None and normalize_email(user.email) == key:
            raise UserError(lazy("This is already the address of your account."), fields=("email",))
        return display

    async def request_email_change(
        self, user: UserRecord, new_email: str, *, base_url: str | None, **context: Any
    ) -> str:
        """Mail a confirmation link to ``new_email`` (the password was checked by the
        caller); the account keeps its address until the link is followed. Returns the
        address as kept. ``UserError`` or ``RateLimited`` (per account)."""
        address = self.check_new_address(user, new_email)
        if base_url is None:
            raise UserError(lazy("Links cannot be mailed because BASTION_PUBLIC_URL is not set."))
        await self.link_limits["change"].hit(f"user {user.id}")
        token = self.tokens.make("change", user, new_email=address)
        await self.mailer.send(
            MAIL_CHANGE,
            to=address,
            context={
                "username": user.username,
                "link": self.link(base_url, "change", token),
                "valid_for": self._valid_for(),
                "new_email": address,
            },
            language=user.language,
        )
        await self.accounts.audit.record(
            "email.change_requested", user_id=user.id, username=user.username, **context
        )
        return address

    # ---- tasks after the response ---------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for the work started after responses (tests; shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - bounded wait
        """Let pending work finish for up to ``timeout`` seconds, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def redact_token_paths(path: str) -> str:
    """``path`` with the token of a recovery link replaced by ``[token]``."""
    for prefix in TOKEN_PATHS:
        at = path.find(prefix)
        if at != -1:
            start = at + len(prefix)
            end = len(path)
            for stop in "?#/":
                found = path.find(stop, start)
                if found != -1:
                    end = min(end, found)
            if end > start:
                return path[:start] + REDACTED + path[end:]
    return path


class TokenPathFilter(logging.Filter):
    """Hides the tokens of recovery links in access-log records: uvicorn's (whose
    arguments are ``client, method, path, http version, status``) and in any record's
    message text. ``bastion serve`` installs it on uvicorn's access log; add it to your own
    server's access log the same way (docs/account-recovery.md)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(redact_token_paths(a) if isinstance(a, str) else a for a in args)
        if isinstance(record.msg, str):
            record.msg = redact_token_paths(record.msg)
        return True
