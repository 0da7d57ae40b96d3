"""The gettext catalogues in ``bastion/locale``.

A wheel carries the compiled ``.mo`` files (the build hook compiles them from the ``.po``
sources, which are all the repository keeps); a source checkout has no ``.mo`` and compiles
the ``.po`` in memory on first use, so both read the same messages.
"""

from __future__ import annotations

import functools
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "bastion"


def gettext_locale(language: str) -> str:
    """``zh-CN`` -> ``zh_CN``: the catalogue folder and Babel's locale name."""
    return language.replace("-", "_")


@functools.cache
def translations(language: str) -> NullTranslations:
    """The catalogue of ``language`` (a supported tag); English falls back to the msgids."""
    folder = LOCALE_DIR / gettext_locale(language) / "LC_MESSAGES"
    compiled = folder / f"{DOMAIN}.mo"
    if compiled.is_file():
        with compiled.open("rb") as file:
            return Translations(file, domain=DOMAIN)
    source = folder / f"{DOMAIN}.po"
    if not source.is_file():
        return NullTranslations()
    with source.open("rb") as file:
        catalog = read_po(file, locale=gettext_locale(language), domain=DOMAIN)
    buffer = BytesIO()
    write_mo(buffer, catalog)  # fuzzy entries are left out, as pybabel compile does
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)
