"""Where a browser may be sent after signing in."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

DEFAULT_NEXT = "/dashboard"


def safe_next(value: str | None, default: str = DEFAULT_NEXT) -> str:
    """A same-origin relative path, or ``default``.

    Refuses anything a browser could read as another origin: ``//host``, ``/\\host``,
    schemes, control characters and non-ASCII.
    """
    if not value or len(value) > 2048 or not value.isascii() or not value.isprintable():
        return default
    if not value.startswith("/") or value.startswith(("//", "/\\")) or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def login_url(next_path: str) -> str:
    return f"/login?next={quote(safe_next(next_path), safe='/')}"


REAUTH_PATH = "/reauth"


def reauth_url(next_path: str) -> str:
    """The re-authentication page, coming back to ``next_path`` (a same-origin path)."""
    return f"{REAUTH_PATH}?next={quote(safe_next(next_path), safe='/')}"
