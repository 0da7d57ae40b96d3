"""Languages: which one a request gets, the gettext catalogues, and locale formatting.

English (``en``) and Simplified Chinese (``zh-CN``). Messages are marked with
:func:`gettext` / :func:`ngettext` where they are shown, or with :func:`lazy` where they are
defined before any request (module constants, exceptions): a lazy message is translated
each time it is turned into text, in the language of the request being answered
(:func:`use_language`). Outside a request (the CLI, logs) that is English.
"""

from bastion.i18n.catalogue import translations
from bastion.i18n.context import (
    LazyText,
    current_language,
    gettext,
    lazy,
    lazy_plural,
    ngettext,
    use_language,
)
from bastion.i18n.languages import (
    DEFAULT_LANGUAGE,
    LANGUAGE_COOKIE,
    LANGUAGES,
    from_accept_language,
    normalize_language,
)

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "LANGUAGE_COOKIE",
    "LazyText",
    "current_language",
    "from_accept_language",
    "gettext",
    "lazy",
    "lazy_plural",
    "ngettext",
    "normalize_language",
    "translations",
    "use_language",
]
