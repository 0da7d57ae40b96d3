"""Defined roles: the rule for new role names, the built-in ``admin`` role and the refusals.

A role is granted only once it is defined (``bastion roles create NAME``); granting an
undefined one is refused everywhere, so a typo cannot invent a privilege. ``admin``, the
role of the admin pages, is defined by the migrations and cannot be deleted.
"""

from __future__ import annotations

import re
from typing import Final

from bastion.exceptions import UserError
from bastion.i18n import lazy, lazy_plural
from bastion.users.models import (
    ROLE_DESCRIPTION_MAX_LENGTH,
    ROLE_MAX_LENGTH,
    ROLE_NAME_EMPTY,
    ROLE_NAME_TOO_LONG,
)

ADMIN_ROLE: Final = "admin"
_SLUG: Final = re.compile(r"[a-z0-9][a-z0-9_-]*")


class UnknownRole(UserError):
    """A role that is not defined was to be granted (or deleted)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            lazy(
                "The role '%(name)s' is not defined. Define it first with: "
                "bastion roles create %(name)s",
                name=name,
            )
        )
        self.role = name


class RoleInUse(UserError):
    """A role that users hold was to be deleted without taking it from them first."""

    def __init__(self, name: str, holders: int) -> None:
        super().__init__(
            lazy_plural(
                "The role '%(name)s' is held by %(num)d user.",
                "The role '%(name)s' is held by %(num)d users.",
                holders,
                name=name,
            )
        )
        self.role = name
        self.holders = holders


def check_role_name(name: str) -> str:
    """The name of a role to define: a short slug (lowercase ASCII letters, digits, ``-``
    and ``_``, starting with a letter or digit). Raises :class:`UserError`."""
    if not name:
        raise UserError(ROLE_NAME_EMPTY)
    if len(name) > ROLE_MAX_LENGTH:
        raise UserError(ROLE_NAME_TOO_LONG)
    if _SLUG.fullmatch(name) is None:
        raise UserError(
            lazy(
                "A role name may hold only lowercase letters a-z, digits, '-' and '_', "
                "and starts with a letter or digit."
            )
        )
    return name


def check_role_description(description: str | None) -> str | None:
    """A role's optional description, stripped; a blank one is none."""
    text = (description or "").strip()
    if len(text) > ROLE_DESCRIPTION_MAX_LENGTH:
        raise UserError(
            lazy(
                "The description is longer than %(max)d characters.",
                max=ROLE_DESCRIPTION_MAX_LENGTH,
            )
        )
    if any(not ch.isprintable() for ch in text):
        raise UserError(lazy("The description contains control characters."))
    return text or None


def check_deletable(name: str) -> None:
    if name == ADMIN_ROLE:
        raise UserError(
            lazy(
                "'%(name)s' is the built-in role of the admin pages. It cannot be deleted.",
                name=ADMIN_ROLE,
            )
        )


__all__ = [
    "ADMIN_ROLE",
    "ROLE_DESCRIPTION_MAX_LENGTH",
    "RoleInUse",
    "UnknownRole",
    "check_deletable",
    "check_role_description",
    "check_role_name",
]
