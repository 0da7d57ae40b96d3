"""Bastion's exception hierarchy. Messages are safe to show: no keys, SQL or paths.

A message meant for people (a :class:`UserError`'s) is a whole sentence marked for
translation (``lazy(...)``): ``str(error)`` gives it in the language of the request being
answered, and in English outside one (the command line, logs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bastion.i18n import lazy


class BastionError(Exception):
    """Base class of every error Bastion raises on purpose."""


class ConfigError(BastionError):
    """The settings are invalid or unsafe; start-up stops with this one-line message."""


class StoreUnavailable(BastionError):
    """A backing service (Redis, the database) did not answer in time or refused.

    ``component`` names what is down in words fit for a 503 body, e.g. "session store".
    """

    def __init__(self, component: str, detail: str = "") -> None:
        self.component = component
        self.detail = detail  # for logs only, never for responses
        super().__init__(f"{component} unavailable")


class TokenError(BastionError):
    """A token is malformed, forged, expired or belongs to an ended session."""

    def __init__(self, reason: str = "invalid token") -> None:
        self.reason = reason
        super().__init__(reason)


class CSRFError(BastionError):
    """An unsafe request failed the CSRF checks."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RateLimited(BastionError):
    """Too many attempts; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(f"too many attempts, retry after {self.retry_after} s")


class UserError(BastionError):
    """An account operation was refused (duplicate user, unknown user, weak password...).

    The message is a whole sentence fit to show as it is (a lazy, translated one).
    ``fields`` names the form fields it is about (``"username"``, ``"email"``,
    ``"password"``, ``"password_confirm"``), when it is about some: a page marks those
    fields as invalid (``aria-invalid``).
    """

    def __init__(self, message: Any = "", *, fields: Iterable[str] = ()) -> None:
        self.fields = frozenset(fields)
        super().__init__(message)


class AuthenticationFailed(BastionError):
    """Sign-in refused. One message for unknown user, wrong password and disabled account."""

    def __init__(self) -> None:
        super().__init__(lazy("Invalid user name or password."))
