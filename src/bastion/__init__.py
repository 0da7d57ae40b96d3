"""Bastion: correct-by-default sign-in for FastAPI.

The core (settings, sessions, tokens, passwords, stores...) imports neither FastAPI nor
Starlette; the FastAPI integration lives in :mod:`bastion.fastapi`. ``install`` and the
route dependencies are re-exported here lazily, so ``import bastion`` stays core-only.
"""

from __future__ import annotations

from typing import Any

from bastion.exceptions import (
    AuthenticationFailed,
    BastionError,
    ConfigError,
    CSRFError,
    RateLimited,
    StoreUnavailable,
    TokenError,
    UserError,
)
from bastion.settings import Settings, get_settings

__version__ = "0.1.0.dev0"

_FASTAPI_NAMES = frozenset(
    {
        "install",
        "CurrentUser",
        "OptionalUser",
        "SignedInUser",
        "RecentUser",
        "Principal",
        "require_role",
        "require_recent_auth",
        "cached",
    }
)

__all__ = [
    "AuthenticationFailed",
    "BastionError",
    "CSRFError",
    "ConfigError",
    "CurrentUser",
    "OptionalUser",
    "Principal",
    "RateLimited",
    "RecentUser",
    "Settings",
    "SignedInUser",
    "StoreUnavailable",
    "TokenError",
    "UserError",
    "__version__",
    "cached",
    "get_settings",
    "install",
    "require_recent_auth",
    "require_role",
]


def __getattr__(name: str) -> Any:
    if name in _FASTAPI_NAMES:
        from bastion import fastapi

        return getattr(fastapi, name)
    raise AttributeError(f"module 'bastion' has no attribute {name!r}")
