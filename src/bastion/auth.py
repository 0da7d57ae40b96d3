"""Password and second-factor checks: sign-in (the login page and the token endpoint), its
second step, and the checks of a signed-in user's password or factor (password change,
re-authentication).

Every check goes through :meth:`Authenticator._limited`, so all of them share one failure
message, one timing profile and one brute-force budget per account and per address.

For a user with a second factor a right password is only half a sign-in: it raises
:class:`SecondFactorRequired` and leaves the attempt counted against the account (as every
attempt is counted before it is judged), so the back-off holds across both steps and only a
right second factor (:meth:`Authenticator.check_second_factor`) clears it. Were the password
to clear it, someone who knows the password could reset the back-off between guesses of the
code by signing in again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from bastion.audit import AuditTrail
from bastion.exceptions import AuthenticationFailed, StoreUnavailable, UserError
from bastion.hooks import Channel, FailureReason, Hooks, SignInFailed
from bastion.passwords import Passwords
from bastion.text import clean_text
from bastion.users.models import normalize_username
from bastion.users.repository import UserRecord, UserRepository

T = TypeVar("T")
# How a second factor is named in audit details and hook events.
FactorMethod = Literal["totp", "recovery_code", "passkey"]


class SecondFactorRequired(Exception):
    """The password was right, but the user has a second factor to prove before any session
    exists (the caller starts the pending state of the two-step sign-in). Callers unaware of
    second factors fail closed: this is not an :class:`AuthenticationFailed`, so nothing
    treats it as a success either."""

    def __init__(self, user: UserRecord) -> None:
        super().__init__("second factor required")
        self.user = user


class LoginLimiter(Protocol):
    """Brute-force protection consulted around every password check."""

    async def check(self, account: str, ip: str | None) -> None:
        """Raise :class:`bastion.exceptions.RateLimited` while throttled."""
        ...

    async def failed(self, account: str, ip: str | None) -> None: ...

    async def abandoned(self, account: str, ip: str | None) -> None:
        """The attempt could not be judged (an outage): it must not count against anyone."""
        ...

    async def succeeded(self, account: str, ip: str | None) -> None: ...

    async def reset(self, account: str) -> None:
        """Forget the account's failures and end its back-off (an operator's decision)."""
        ...


def limiter_account(username: str) -> str:
    """The key an account's budget is kept under: the normalised user name, or "" for a
    name no account can have (limited by address only)."""
    try:
        return normalize_username(username)
    except UserError:
        return ""


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One password check, as the limiter and the audit trail see it."""

    account: str
    username: str  # as given, for the audit record
    ip: str | None
    user_agent: str | None
    failure_event: str
    detail: dict[str, str] = field(default_factory=dict)
    # Set for a sign-in (its failures reach the application's hook), None for a re-check.
    channel: Channel | None = None
    method: str = "password"


class Authenticator:
    def __init__(
        self,
        users: UserRepository,
        passwords: Passwords,
        audit: AuditTrail,
        limiter: LoginLimiter | None = None,
        *,
        session_ready: Callable[[], Awaitable[None]] | None = None,
        hooks: Hooks | None = None,
        has_second_factor: Callable[[int], Awaitable[bool]] | None = None,
    ) -> None:
        self.users = users
        self.passwords = passwords
        self.audit = audit
        self.limiter = limiter
        # A sign-in that succeeds writes a session; one that fails does not. When sessions
        # live apart from the database and the limits (Redis sessions, memory limits), an
        # outage of the session store alone would tell right passwords (503) from wrong
        # ones (400), so it is asked first and fails every attempt alike.
        self.session_ready = session_ready
        self.hooks = hooks or Hooks()
        # Whether a user (by id) has a second factor to prove after the password; None: no
        # second factors (every right password signs in).
        self.has_second_factor = has_second_factor

    async def authenticate(
        self,
        username: str,
        password: str,
        *,
        ip: str | None,
        user_agent: str | None,
        channel: Channel,
    ) -> UserRecord:
        """The active user whose password this is, or :class:`AuthenticationFailed`.

        Unknown users, wrong passwords and disabled accounts cost the same hashing work and
        raise the same error; while throttled even a correct password gets ``RateLimited``.
        A right password of a user with a second factor raises :class:`SecondFactorRequired`
        (the sign-in is finished by :meth:`check_second_factor`).
        """
        attempt = _Attempt(
            limiter_account(username),
            username,
            ip,
            user_agent,
            "login.failure",
            {"channel": channel},
            channel,
        )

        async def sign_in() -> UserRecord:
            if self.session_ready is not None:
                await self.session_ready()
            user = await self.users.get_by_username(username) if attempt.account else None
            user = await self._verify(user, password, attempt)
            if self.has_second_factor is not None and await self.has_second_factor(user.id):
                # Not a success yet: the attempt stays counted (see the module's docstring)
                # and the sign-in is recorded when the second factor is proved.
                raise SecondFactorRequired(user)
            await self.users.record_login(user.id)
            return user

        return await self._limited(attempt, sign_in)

    async def confirm_password(
        self,
        user_id: int,
        password: str,
        *,
        ip: str | None,
        user_agent: str | None,
        purpose: str,
    ) -> UserRecord:
        """The signed-in user ``user_id`` proves their password again (``purpose``, e.g.
        "password change"): the same back-off and address limit as sign-in, failures
        audited as ``reauth.failure``. Returns the (active) user, or raises
        :class:`AuthenticationFailed` / ``RateLimited`` like :meth:`authenticate`."""
        user = await self.users.get_by_id(user_id)
        username = user.username if user is not None else ""
        attempt = _Attempt(
            limiter_account(username),
            username,
            ip,
            user_agent,
            "reauth.failure",
            {"purpose": purpose},
        )
        return await self._limited(attempt, lambda: self._verify(user, password, attempt))

    async def check_second_factor(
        self,
        user_id: int,
        check: Callable[[UserRecord], Awaitable[bool]],
        *,
        method: FactorMethod,
        ip: str | None,
        user_agent: str | None,
        channel: Channel | None = None,
        purpose: str = "sign-in",
    ) -> UserRecord:
        """User ``user_id`` proves a second factor: ``check(user)`` says whether the code (or
        assertion) is right, e.g. ``lambda user: mfa.verify_totp(user.id, code)``.

        The same back-off and address limit as passwords: a wrong code is counted against the
        account, audited as ``mfa.failure`` (detail: ``method``, ``reason`` "code", and the
        ``channel`` or ``purpose``), and raises :class:`AuthenticationFailed`; a right one
        clears the account's failures and returns the (active) user. With ``channel`` this is
        the second step of a sign-in: it is recorded as the user's last sign-in and failures
        reach the ``on_sign_in_failed`` hook (with ``method``); without, it is a re-check of
        a signed-in user (``purpose``, e.g. "re-authentication"). A disabled or deleted
        account fails without running ``check`` (a recovery code is never spent on it).
        ``RateLimited`` while throttled, ``StoreUnavailable`` (attempt not counted) in an
        outage."""
        detail = {"method": method, **({"channel": channel} if channel else {"purpose": purpose})}

        async def prove() -> UserRecord:
            if channel is not None and self.session_ready is not None:
                await self.session_ready()
            if user is None:
                await self._failed(attempt, None, "unknown user")
            assert user is not None
            if not user.is_active:
                await self._failed(attempt, user.id, "disabled")
            if not await check(user):
                await self._failed(attempt, user.id, "code")
            if channel is not None:
                await self.users.record_login(user.id)
            return user

        user = await self.users.get_by_id(user_id)
        username = user.username if user is not None else ""
        attempt = _Attempt(
            limiter_account(username),
            username,
            ip,
            user_agent,
            "mfa.failure",
            detail,
            channel,
            method,
        )
        return await self._limited(attempt, prove)

    async def _limited(self, attempt: _Attempt, check: Callable[[], Awaitable[T]]) -> T:
        """Run ``check`` as one attempt admitted by the limiter; a success resets the
        account's failures, an outage gives the attempt back."""
        limiter = self.limiter
        if limiter is not None:
            await limiter.check(attempt.account, attempt.ip)
        try:
            result = await check()
            if limiter is not None:
                await limiter.succeeded(attempt.account, attempt.ip)
            return result
        except StoreUnavailable:
            if limiter is not None:
                with contextlib.suppress(StoreUnavailable):
                    await limiter.abandoned(attempt.account, attempt.ip)
            raise

    async def _verify(
        self, user: UserRecord | None, password: str, attempt: _Attempt
    ) -> UserRecord:
        if user is None:
            await self.passwords.verify_unknown_user(password)
            await self._failed(attempt, None, "unknown user")
        assert user is not None
        ok, needs_rehash = await self.passwords.verify_async(password, user.password_hash)
        if not ok:
            await self._failed(attempt, user.id, "password")
        if not user.is_active:
            await self._failed(attempt, user.id, "disabled")
        if needs_rehash:
            new_hash = await self.passwords.hash_async(password)
            await self.users.set_password_hash(user.id, new_hash, changed=False)
        return user

    async def _failed(self, attempt: _Attempt, user_id: int | None, reason: FailureReason) -> None:
        if self.limiter is not None:
            await self.limiter.failed(attempt.account, attempt.ip)
        # Required: a success must write (the last-login time, the session), so a failure
        # that could not be written gets the same 503, or a database that reads but refuses
        # writes would tell right passwords (503) from wrong ones (400).
        await self.audit.record(
            attempt.failure_event,
            user_id=user_id,
            username=attempt.username[:150],
            ip=attempt.ip,
            user_agent=attempt.user_agent,
            detail={**attempt.detail, "reason": reason},
            required=True,
        )
        if attempt.channel is not None:
            await self.hooks.emit(
                SignInFailed(
                    username=clean_text(attempt.username[:150]),
                    user_id=user_id,
                    ip=attempt.ip,
                    user_agent=attempt.user_agent,
                    channel=attempt.channel,
                    method=attempt.method,
                    reason=reason,
                )
            )
        raise AuthenticationFailed
