"""The FastAPI integration: the only package of Bastion that imports FastAPI."""

from __future__ import annotations

from bastion.cache import Cache
from bastion.fastapi.caching import CacheScopeError, cached, get_cache
from bastion.fastapi.dependencies import (
    CurrentUser,
    OptionalUser,
    Principal,
    require_role,
)
from bastion.fastapi.install import Bastion, install

__all__ = [
    "Bastion",
    "Cache",
    "CacheScopeError",
    "CurrentUser",
    "OptionalUser",
    "Principal",
    "cached",
    "get_cache",
    "install",
    "require_role",
]
