"""Password policy: NIST SP 800-63B style, length and a blocklist, no composition rules."""

from __future__ import annotations

import gzip
import unicodedata
from functools import cache
from importlib import resources

from bastion.exceptions import UserError

MAX_PASSWORD_BYTES = 1024


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords (see ``bastion/data/README.md`` for its source)."""
    data = resources.files("bastion").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").split())


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def check_password(password: str, min_length: int, *, username: str | None = None) -> None:
    """Refuse a password that breaks the policy, with a message fit to show the user."""
    if not password:
        raise UserError("the password is empty")
    if len(password) < min_length:
        raise UserError(f"the password must have at least {min_length} characters")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise UserError(f"the password must not exceed {MAX_PASSWORD_BYTES} bytes")
    folded = _fold(password)
    if folded in common_passwords() or folded.strip() in common_passwords():
        raise UserError("this password is too common; choose another")
    if username and _fold(username) in folded:
        raise UserError("the password must not contain the user name")
