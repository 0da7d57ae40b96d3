"""What can go wrong with an external sign-in, as exceptions the routes turn into pages.

Messages are safe to show: they never hold a token, a code or the client secret.
"""

from __future__ import annotations

from bastion.exceptions import BastionError


class FederationError(BastionError):
    """The provider's answer cannot be accepted (a missing, unknown, used or foreign
    ``state``; an error the provider sent back; an invalid ID token): a 400 page, no
    session. ``code`` is the provider's OAuth error code (``access_denied``) when it sent
    one."""

    def __init__(self, reason: str, code: str | None = None) -> None:
        self.reason = reason
        self.code = code
        super().__init__(reason if code is None else f"{reason}: {code}")


class ProviderUnavailable(BastionError):
    """The provider (discovery, keys, token or user endpoints) did not answer properly in
    time: a 503 page naming it. ``detail`` is for logs."""

    def __init__(self, name: str, detail: str = "") -> None:
        self.name = name
        self.detail = detail
        super().__init__(f"{name} is unavailable")


class UnknownProvider(BastionError):
    """No provider of that name is configured (a 404)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no provider named {name!r}")


class SignInRefused(BastionError):
    """The external identity is valid but gives no session: ``reason`` is one of
    ``disabled`` (the linked user is disabled), ``registration_closed`` (no linked user
    and no new accounts)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class LinkNeedsPassword(BastionError):
    """An account with the provider's address exists, but the address alone links
    nothing: the user signs in with the password, then links from /account/connections."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        super().__init__("sign in with your password, then connect the provider")


class IdentityTaken(BastionError):
    """Linking refused: the external identity belongs to another user, or this user has
    an identity of that provider already."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class LastSignInMethod(BastionError):
    """Unlinking refused: the user would have no password, passkey or other provider."""

    def __init__(self) -> None:
        super().__init__("this is the only way to sign in to this account")
