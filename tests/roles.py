"""Roles for test fixtures: Bastion grants only defined roles, so a fixture that gives a
user roles defines them first (``admin`` is built in; defining it again is skipped)."""

from __future__ import annotations

from collections.abc import Iterable

from bastion.users.repository import UserRepository


async def define_roles(users: UserRepository, roles: Iterable[str]) -> None:
    """Define those of ``roles`` that are not defined yet."""
    defined = {role.name for role in await users.list_roles()}
    for name in sorted(set(roles) - defined):
        await users.create_role(name)
