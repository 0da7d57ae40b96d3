"""gettext and locale filters for Jinja2 environments (pages and emails)."""

from __future__ import annotations

from datetime import UTC, datetime

from jinja2 import Environment

from bastion.i18n.catalogue import translations
from bastion.i18n.context import current_language
from bastion.i18n.formatting import format_duration, format_when
from bastion.i18n.languages import LANGUAGES


def _gettext(message: str) -> str:
    # Unformatted: Jinja's new-style gettext fills the placeholders (and escapes).
    return translations(current_language()).gettext(message)


def _ngettext(singular: str, plural: str, count: int) -> str:
    return translations(current_language()).ngettext(singular, plural, count)


def _iso(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="seconds")


def install_translations(env: Environment) -> None:
    """gettext in ``env``'s templates, in the language of the request being answered:
    ``{% trans %}``, ``_()``, ``ngettext()`` (new style: autoescaped, ``%(name)s``
    placeholders), and the locale filters ``when`` (a timestamp, in the reader's zone),
    ``iso`` (for ``<time datetime>``) and ``duration`` (seconds in words). ``env`` must
    have the ``jinja2.ext.i18n`` extension."""
    env.install_gettext_callables(  # type: ignore[attr-defined]
        _gettext, _ngettext, newstyle=True
    )
    env.filters["when"] = format_when
    env.filters["iso"] = _iso
    env.filters["duration"] = format_duration
    env.globals["languages"] = LANGUAGES
    env.globals["current_language"] = current_language
