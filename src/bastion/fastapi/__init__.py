"""The FastAPI integration: the only package of Bastion that imports FastAPI."""

from __future__ import annotations

from bastion.cache import Cache
from bastion.fastapi.caching import CacheScopeError, cached, get_cache
from bastion.fastapi.dependencies import (
    CurrentUser,
    OptionalUser,
    Principal,
    RecentUser,
    SignedInUser,
    recent_user,
    require_recent_auth,
    require_role,
    signed_in_user,
)
from bastion.fastapi.install import Bastion, install
from bastion.fastapi.templating import add_template_helpers

__all__ = [
    "Bastion",
    "Cache",
    "CacheScopeError",
    "CurrentUser",
    "OptionalUser",
    "Principal",
    "RecentUser",
    "SignedInUser",
    "add_template_helpers",
    "cached",
    "get_cache",
    "install",
    "recent_user",
    "require_recent_auth",
    "require_role",
    "signed_in_user",
]
