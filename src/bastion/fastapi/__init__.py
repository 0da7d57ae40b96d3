"""The FastAPI integration: the only package of Bastion that imports FastAPI."""

from __future__ import annotations

from bastion.fastapi.dependencies import (
    CurrentUser,
    OptionalUser,
    Principal,
    require_role,
)
from bastion.fastapi.install import Bastion, install

__all__ = ["Bastion", "CurrentUser", "OptionalUser", "Principal", "install", "require_role"]
