"""Text from requests, made safe to store: the same rule on every database.

PostgreSQL refuses NUL in ``text`` and ``varchar`` values (SQLite takes it), and no database
driver can encode a lone surrogate as UTF-8. Anything a client sent that ends up in a row
(audit records, search terms) goes through :func:`clean_text` first, so a stray byte is
recorded as a visible replacement character instead of failing the request on one database
only. Values with rules of their own (user names, e-mail addresses) are refused instead.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"

# C0 controls, DEL, C1 controls and lone surrogates. Tab and newline go too: none of the
# values cleaned here is multi-line, and a raw line break in an audit field could fake a
# second record in a log or terminal.
_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` with every control character and lone surrogate replaced by U+FFFD.

    The length is unchanged, so clipping to a column's width works the same before or after.
    """
    return _UNSTORABLE.sub(REPLACEMENT, value)


def clean_optional(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


__all__ = ["REPLACEMENT", "clean_optional", "clean_text"]
