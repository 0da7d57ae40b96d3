"""A free, valid user name for an account made by a first external sign-in."""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterable

from bastion.exceptions import UserError
from bastion.users.models import check_new_username, username_skeleton
from bastion.users.repository import UserRepository

MAX_BASE = 40
FALLBACK = "user"
_SEPARATORS = re.compile(r"[-._]{2,}")


def _valid(name: str) -> str | None:
    name = _SEPARATORS.sub("-", name).strip("-._")[:MAX_BASE].strip("-._")
    if not name:
        return None
    try:
        check_new_username(name)
    except UserError:
        return None
    return name


def base_name(hints: Iterable[str | None]) -> str:
    """The first hint (a provider's user name, an address's local part, a display name)
    that makes a valid name once cleaned: letters, digits, ``.``, ``_`` and ``-``; in
    ASCII when its own letters mix scripts."""
    for hint in hints:
        if not hint:
            continue
        text = unicodedata.normalize("NFKC", hint).strip()
        cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in text)
        ascii_only = re.sub(
            r"[^A-Za-z0-9._-]+",
            "-",
            unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode(),
        )
        for candidate in (cleaned, ascii_only):
            if name := _valid(candidate):
                return name
    return FALLBACK


async def free_username(users: UserRepository, hints: Iterable[str | None]) -> str:
    """``base``, else ``base2`` ... ``base20``, else ``base-`` and random hex: the first that
    no account has (compared as the database compares: folded key and look-alike skeleton).
    Another sign-in may take it meanwhile; the caller retries on "user already exists"."""
    base = base_name(hints)
    candidates = [base, *(f"{base}{n}" for n in range(2, 21))]
    keys = {name: check_new_username(name) for name in candidates}
    skeletons = {name: username_skeleton(key) for name, key in keys.items()}
    taken = await users.find_taken(keys.values(), skeletons.values())
    for name in candidates:
        if keys[name] not in taken.username_keys and skeletons[name] not in taken.skeletons:
            return name
    return f"{base}-{secrets.token_hex(3)}"
