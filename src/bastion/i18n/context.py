"""The language of the request being answered, and messages translated into it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from bastion.i18n.catalogue import translations
from bastion.i18n.languages import DEFAULT_LANGUAGE

_language: ContextVar[str] = ContextVar("bastion_language", default=DEFAULT_LANGUAGE)
# Minutes east of UTC that the browser reported (``bastion_tz`` cookie); None: unknown.
_utc_offset: ContextVar[int | None] = ContextVar("bastion_utc_offset", default=None)


def current_language() -> str:
    return _language.get()


@contextmanager
def use_language(language: str) -> Iterator[None]:
    """Translate into ``language`` inside the block (a request, an e-mail for a user)."""
    token = _language.set(language)
    try:
        yield
    finally:
        _language.reset(token)


def set_language(language: str, utc_offset: int | None = None) -> None:
    """Translate into ``language``, and show times at ``utc_offset``, for the rest of this
    context (the language middleware: the request's task and what it calls)."""
    _language.set(language)
    _utc_offset.set(utc_offset)


def current_utc_offset() -> int | None:
    return _utc_offset.get()


def _format(text: str, params: Mapping[str, Any]) -> str:
    return text % params if params else text


def gettext(message: str, **params: Any) -> str:
    """``message`` in the current language, with ``%(name)s`` placeholders filled."""
    return _format(translations(_language.get()).gettext(message), params)


def ngettext(singular: str, plural: str, count: int, **params: Any) -> str:
    """The form for ``count`` in the current language (Chinese has one form); ``%(num)d``
    is ``count``."""
    text = translations(_language.get()).ngettext(singular, plural, count)
    return _format(text, {"num": count, **params})


class LazyText:
    """A message translated when it becomes text (``str()``, a template, ``%``), so a
    constant or an exception defined once speaks the language of each request."""

    __slots__ = ("_count", "_params", "_plural", "message")

    def __init__(
        self, message: str, plural: str | None = None, count: int = 0, **params: Any
    ) -> None:
        self.message = message
        self._plural = plural
        self._count = count
        self._params = params

    def __str__(self) -> str:
        if self._plural is None:
            return gettext(self.message, **self._params)
        return ngettext(self.message, self._plural, self._count, **self._params)

    def __html__(self) -> str:
        from markupsafe import escape

        return str(escape(str(self)))

    def __repr__(self) -> str:
        return f"lazy({self.message!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyText):
            return str(self) == str(other)
        return str(self) == other

    def __hash__(self) -> int:
        return hash(self.message)

    def __contains__(self, part: str) -> bool:
        return part in str(self)

    def __add__(self, other: str) -> str:
        return str(self) + other

    def __radd__(self, other: str) -> str:
        return other + str(self)

    def format(self, **params: Any) -> LazyText:
        """The same message with more placeholders filled (``%(address)s``)."""
        return LazyText(self.message, self._plural, self._count, **{**self._params, **params})


def lazy(message: str, **params: Any) -> LazyText:
    """Mark ``message`` for translation, translated when shown (see :class:`LazyText`)."""
    return LazyText(message, **params)


def lazy_plural(singular: str, plural: str, count: int, **params: Any) -> LazyText:
    return LazyText(singular, plural, count, **params)
