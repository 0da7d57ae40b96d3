"""The languages Bastion speaks and how a request's language tags map onto them."""

from __future__ import annotations

import functools
from typing import Final

# Tag (BCP 47, as in <html lang>) -> the language's own name, for the switcher.
LANGUAGES: Final[dict[str, str]] = {"en": "English", "zh-CN": "简体中文"}
DEFAULT_LANGUAGE: Final = "en"
LANGUAGE_COOKIE: Final = "bastion_lang"

# Chinese written in simplified characters: the mainland, Singapore, or a script subtag.
_SIMPLIFIED = {"zh", "zh-cn", "zh-sg", "zh-hans", "zh-hans-cn", "zh-hans-sg", "zh-my"}


def normalize_language(tag: str | None) -> str | None:
    """The supported language a tag names (``zh-Hans-CN`` -> ``zh-CN``, ``en-GB`` -> ``en``),
    or None. Traditional Chinese (``zh-TW``, ``zh-Hant``) is not Simplified Chinese."""
    if not tag or len(tag) > 35:
        return None
    folded = tag.strip().replace("_", "-").lower()
    if folded in _SIMPLIFIED:
        return "zh-CN"
    if folded == "en" or folded.startswith("en-"):
        return "en"
    return None


@functools.lru_cache(maxsize=512)  # browsers send a handful of distinct headers
def from_accept_language(header: str | None) -> str | None:
    """The first supported language of an ``Accept-Language`` header by preference
    (RFC 9110 12.5.4: ``q`` weights, ties kept in order; ``q=0`` refuses), or None."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header[:1024].split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        weight = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                weight = float(params[2:])
            except ValueError:
                continue
        if weight <= 0 or weight > 1:
            continue
        language = normalize_language(tag)
        if language is not None:
            ranked.append((-weight, index, language))
    return min(ranked)[2] if ranked else None


def choose_language(
    *,
    query: str | None,
    cookie: str | None,
    user_choice: str | None,
    accept_language: str | None,
    default: str = DEFAULT_LANGUAGE,
) -> str:
    """Contract 6.5: ``?lang=`` (then kept in the cookie), the user's own choice, the
    browser's ``Accept-Language``, then the site's default."""
    for candidate in (query, cookie, user_choice):
        if (language := normalize_language(candidate)) is not None:
            return language
    # Bounded, so that the cache of parsed headers stays small whatever clients send.
    header = accept_language[:256] if accept_language else None
    return from_accept_language(header) or default
