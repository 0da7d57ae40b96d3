"""Lifecycle hooks: the application's own async functions, called after Bastion changed an
account or a session and the change is durable (committed, audited).

The application passes one :class:`Hooks` to ``install(app, settings, hooks=Hooks(...))``;
Bastion calls each hook with one small frozen event. Events never carry a password, a token
or a raw session id: a session is named by its ``session_ref``, as in the audit log.

A hook never breaks what triggered it: an exception is logged on ``bastion.hooks`` with the
hook's name and the sign-in (or change) goes on. The response waits for a hook at most
:attr:`Hooks.timeout` seconds; past that the hook keeps running in the background (it is
not cancelled) and a warning is logged. The CLI's commands run without the application's
hooks.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bastion.exceptions import ConfigError

log = logging.getLogger("bastion.hooks")

Channel = Literal["web", "api"]
RevokedBy = Literal["owner", "admin", "token"]
# "code": a wrong second factor (TOTP or recovery code) after a right password.
FailureReason = Literal["unknown user", "password", "disabled", "code"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered:
    """A visitor created an account through self-service sign-up (``/register``)."""

    user_id: int
    username: str
    email: str | None
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedIn:
    """A user signed in and holds a new session. ``channel`` is ``"web"`` (the sign-in
    page) or ``"api"`` (the token endpoint); ``method`` how they proved who they are:
    ``"password"``, ``"passkey"``, ``"oauth:<provider>"``, or for a two-step sign-in the
    first step and the second joined by ``+`` (``"password+totp"``,
    ``"password+recovery_code"``, ``"password+passkey"``, ``"external+totp"``, ...)."""

    user_id: int
    username: str
    ip: str | None
    user_agent: str | None
    session_ref: str
    channel: Channel
    method: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignInFailed:
    """A sign-in was refused after its password was checked (throttled attempts, which
    check nothing, are not reported). ``username`` is what was typed (control characters
    replaced, at most 150 characters): treat it as untrusted input. ``user_id`` is None
    when no account has that name. ``method`` is ``"password"``, or for the second step
    of a two-step sign-in ``"totp"``, ``"recovery_code"`` or ``"passkey"`` (with
    ``reason`` ``"code"`` when the factor was wrong)."""

    username: str
    user_id: int | None
    ip: str | None
    user_agent: str | None
    channel: Channel
    method: str
    reason: FailureReason


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedOut:
    """A user signed out of one session (``POST /logout``)."""

    user_id: int
    username: str
    ip: str | None
    user_agent: str | None
    session_ref: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordChanged:
    """A user's password was set: by themselves, or by an operator (``actor_id``)."""

    user_id: int
    username: str
    actor_id: int | None
    ip: str | None
    user_agent: str | None
    sessions_ended: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountDisabled:
    """An account was disabled; every session of it has ended."""

    user_id: int
    username: str
    actor_id: int | None
    ip: str | None
    user_agent: str | None
    sessions_ended: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountDeleted:
    """An account was deleted (its row is gone when the hook runs)."""

    user_id: int
    username: str
    actor_id: int | None
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRevoked:
    """One session was ended on purpose, other than by signing out of it: by its owner
    (a device on ``/account/sessions`` or ``DELETE /api/sessions/{id}``), by an admin, or
    by revoking its refresh token (``POST /api/token/revoke``). Sessions that end because
    the password changed or the account was disabled or deleted are counted in those
    events instead. ``ip`` and ``user_agent`` are the revoking request's."""

    user_id: int
    username: str
    session_ref: str
    by: RevokedBy
    actor_id: int | None
    ip: str | None
    user_agent: str | None


Event = (
    Registered
    | SignedIn
    | SignInFailed
    | SignedOut
    | PasswordChanged
    | AccountDisabled
    | AccountDeleted
    | SessionRevoked
)
Hook = Callable[[Any], Awaitable[None]]

# Which field of Hooks is called for each event.
_HOOK_OF: dict[type[Any], str] = {
    Registered: "on_registered",
    SignedIn: "on_signed_in",
    SignInFailed: "on_sign_in_failed",
    SignedOut: "on_signed_out",
    PasswordChanged: "on_password_changed",
    AccountDisabled: "on_account_disabled",
    AccountDeleted: "on_account_deleted",
    SessionRevoked: "on_session_revoked",
}


def _is_async(function: object) -> bool:
    # A function (or a partial of one), or an object whose __call__ is async.
    if inspect.iscoroutinefunction(function):
        return True
    return callable(function) and inspect.iscoroutinefunction(type(function).__call__)


@dataclass(kw_only=True, eq=False)
class Hooks:
    """The application's hooks, each an ``async def`` taking its event; all optional."""

    on_registered: Callable[[Registered], Awaitable[None]] | None = None
    on_signed_in: Callable[[SignedIn], Awaitable[None]] | None = None
    on_sign_in_failed: Callable[[SignInFailed], Awaitable[None]] | None = None
    on_signed_out: Callable[[SignedOut], Awaitable[None]] | None = None
    on_password_changed: Callable[[PasswordChanged], Awaitable[None]] | None = None
    on_account_disabled: Callable[[AccountDisabled], Awaitable[None]] | None = None
    on_account_deleted: Callable[[AccountDeleted], Awaitable[None]] | None = None
    on_session_revoked: Callable[[SessionRevoked], Awaitable[None]] | None = None
    # Seconds a response waits for one hook; a slower hook finishes in the background.
    timeout: float = 5.0
    _running: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ConfigError("Hooks.timeout must be a positive, finite number of seconds")
        for name in _HOOK_OF.values():
            hook = getattr(self, name)
            if hook is not None and not _is_async(hook):
                raise ConfigError(f"hook {name} must be an async function (async def)")

    async def emit(self, event: Event) -> None:
        """Call the hook of ``event``'s kind, if any. Never raises (but for cancellation of
        the caller, which leaves the hook running)."""
        name = _HOOK_OF[type(event)]
        hook: Hook | None = getattr(self, name)
        if hook is None:
            return
        task = asyncio.create_task(self._run(name, hook, event), name=f"bastion {name}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            log.warning(
                "hook %s still running after %g s: the response goes on without it",
                name,
                self.timeout,
            )

    async def aclose(self) -> None:
        """At shutdown: give hooks still running ``timeout`` seconds, then cancel them."""
        running = set(self._running)
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=self.timeout)
        for task in late:
            log.warning("hook %s cancelled at shutdown", task.get_name().removeprefix("bastion "))
            task.cancel()
        if late:
            await asyncio.wait(late)

    @staticmethod
    async def _run(name: str, hook: Hook, event: Event) -> None:
        try:
            await hook(event)
        except Exception:
            # The application's bug, logged where it will look; never the caller's failure.
            log.exception("hook %s failed", name)


__all__ = [
    "AccountDeleted",
    "AccountDisabled",
    "Channel",
    "Event",
    "Hooks",
    "PasswordChanged",
    "Registered",
    "RevokedBy",
    "SessionRevoked",
    "SignInFailed",
    "SignedIn",
    "SignedOut",
]
