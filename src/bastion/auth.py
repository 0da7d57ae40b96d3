"""Password sign-in, shared by the login page and the token endpoint.

Both go through :meth:`Authenticator.authenticate`, so they share one failure message, one
timing profile and one brute-force budget.
"""

from __future__ import annotations

import contextlib
from typing import Literal, Protocol

from bastion.audit import AuditTrail
from bastion.exceptions import AuthenticationFailed, StoreUnavailable, UserError
from bastion.passwords import Passwords
from bastion.users.models import normalize_username
from bastion.users.repository import UserRecord, UserRepository

Channel = Literal["web", "api"]


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


class Authenticator:
    def __init__(
        self,
        users: UserRepository,
        passwords: Passwords,
        audit: AuditTrail,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self.users = users
        self.passwords = passwords
        self.audit = audit
        self.limiter = limiter

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
        """
        try:
            account = normalize_username(username)
        except UserError:
            account = ""
        if self.limiter is not None:
            await self.limiter.check(account, ip)
        try:
            return await self._judge(account, username, password, ip, user_agent, channel)
        except StoreUnavailable:
            if self.limiter is not None:
                with contextlib.suppress(StoreUnavailable):
                    await self.limiter.abandoned(account, ip)
            raise

    async def _judge(
        self,
        account: str,
        username: str,
        password: str,
        ip: str | None,
        user_agent: str | None,
        channel: Channel,
    ) -> UserRecord:
        user = await self.users.get_by_username(username) if account else None
        if user is None:
            await self.passwords.verify_unknown_user(password)
            await self._failed(account, username, None, ip, user_agent, channel, "unknown user")
        assert user is not None
        ok, needs_rehash = await self.passwords.verify_async(password, user.password_hash)
        if not ok:
            await self._failed(account, username, user.id, ip, user_agent, channel, "password")
        if not user.is_active:
            await self._failed(account, username, user.id, ip, user_agent, channel, "disabled")
        if needs_rehash:
            new_hash = await self.passwords.hash_async(password)
            await self.users.set_password_hash(user.id, new_hash, changed=False)
        await self.users.record_login(user.id)
        if self.limiter is not None:
            await self.limiter.succeeded(account, ip)
        return user

    async def _failed(
        self,
        account: str,
        username: str,
        user_id: int | None,
        ip: str | None,
        user_agent: str | None,
        channel: Channel,
        reason: str,
    ) -> None:
        if self.limiter is not None:
            await self.limiter.failed(account, ip)
        await self.audit.record(
            "login.failure",
            user_id=user_id,
            username=username[:150],
            ip=ip,
            user_agent=user_agent,
            detail={"channel": channel, "reason": reason},
        )
        raise AuthenticationFailed
