"""Password policy: NIST SP 800-63B style, length and a blocklist, no composition rules."""

from __future__ import annotations

import gzip
import unicodedata
from functools import cache
from importlib import resources

from bastion.exceptions import UserError
from bastion.i18n import lazy, lazy_plural

MAX_PASSWORD_BYTES = 1024


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords (see ``bastion/data/README.md`` for its source)."""
    data = resources.files("bastion").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").split())


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def check_password(password: str, min_length: int, *, username: str | None = None) -> None:
    """Refuse a password that breaks the policy, with a message fit to show the user (a
    whole sentence, translated; the error's ``field`` is ``"password"``)."""
    if not password:
        raise UserError(lazy("The password is empty."), fields=("password",))
    if len(password) < min_length:
        raise UserError(
            lazy_plural(
                "The password must have at least %(num)d character.",
                "The password must have at least %(num)d characters.",
                min_length,
            ),
            fields=("password",),
        )
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise UserError(
            lazy("The password must not exceed %(max)d bytes.", max=MAX_PASSWORD_BYTES),
            fields=("password",),
        )
    folded = _fold(password)
    if folded in common_passwords() or folded.strip() in common_passwords():
        raise UserError(
            lazy("This password is too common. Choose another one."), fields=("password",)
        )
    if username and _fold(username) in folded:
        raise UserError(lazy("The password must not contain the user name."), fields=("password",))
