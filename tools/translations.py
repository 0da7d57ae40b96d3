"""Bastion's gettext catalogues: extract, update, compile and check.

    python3 dev.py translations          # extract messages, merge them into every .po
    python3 dev.py translations check    # fail on a missing, untranslated or fuzzy message

The ``.po`` files in ``src/bastion/locale`` are the only form kept in the repository; the
wheel's build hook (``hatch_build.py``) compiles them to ``.mo``, and a source checkout
compiles them in memory when first used (``bastion.i18n.catalogue``).
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "bastion"
LOCALE_DIR = PACKAGE / "locale"
DOMAIN = "bastion"
LOCALES = ("zh_CN",)  # English is the source language: its messages are the msgids

# What marks a message: gettext/ngettext where shown, lazy/lazy_plural where defined early,
# _() in templates.
KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "lazy": None,
    "lazy_plural": (1, 2),
}
MAPPING = ROOT / "babel.cfg"  # which extractor reads which files; pybabel reads it too


def mapping() -> tuple[list[tuple[str, str]], dict[str, dict[str, str]]]:
    with MAPPING.open() as file:
        parsed: tuple[list[tuple[str, str]], dict[str, dict[str, str]]]
        parsed = parse_mapping_cfg(file, filename=str(MAPPING))  # type: ignore[no-untyped-call]
    return parsed


def extract() -> Catalog:
    """Every message marked in the package's code and templates."""
    catalog = Catalog(project="Bastion", domain=DOMAIN, charset="utf-8")
    method_map, options_map = mapping()
    for filename, lineno, message, comments, context in extract_from_dir(
        PACKAGE,
        method_map=method_map,
        options_map=options_map,
        keywords=KEYWORDS,
        comment_tags=("Translators:",),
        strip_comment_tags=True,
    ):
        catalog.add(
            message,
            None,
            [(f"src/bastion/{filename}", lineno)],
            auto_comments=comments,
            context=context,
        )
    return catalog


def po_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def read(locale: str) -> Catalog:
    path = po_path(locale)
    if not path.exists():
        return Catalog(locale=locale, domain=DOMAIN, project="Bastion", charset="utf-8")
    with path.open("rb") as file:
        return read_po(file, locale=locale, domain=DOMAIN)


def describe(catalog: Catalog) -> None:
    """The header a translator expects instead of Babel's placeholders, and not fuzzy
    (``pybabel compile`` refuses a catalogue whose header is)."""
    catalog.fuzzy = False
    catalog.header_comment = (
        f"# {catalog.locale_identifier} translation of Bastion's pages, messages and e-mails.\n"
        "# Keep it in step with the code: python3 dev.py translations (docs/languages.md)."
    )
    catalog.project = "Bastion"
    with (ROOT / "pyproject.toml").open("rb") as file:
        catalog.version = tomllib.load(file)["project"]["version"]
    catalog.msgid_bugs_address = "the project's issue tracker"
    catalog.last_translator = "Bastion developers"
    catalog.language_team = f"Bastion {catalog.locale_identifier}"


def update() -> None:
    """Merge the extracted messages into each ``.po`` (new ones untranslated, gone ones
    dropped), keeping every translation whose message is still there."""
    template = extract()
    for locale in LOCALES:
        catalog = read(locale)
        catalog.update(template, no_fuzzy_matching=True, update_creation_date=False)
        catalog.obsolete.clear()
        catalog.revision_date = datetime.now(UTC)
        describe(catalog)
        path = po_path(locale)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            write_po(file, catalog, width=100, sort_output=False, include_previous=False)
        print(f"{path.relative_to(ROOT)}: {len(catalog)} messages")


def _forms(message: Message) -> Iterator[str]:
    if isinstance(message.string, tuple | list):
        yield from message.string
    else:
        yield message.string or ""


def problems() -> list[str]:
    """What keeps a catalogue from being complete: a message of the code missing from it,
    a message untranslated or fuzzy, or a translation whose placeholders differ."""
    template = extract()
    found: list[str] = []
    for locale in LOCALES:
        catalog = read(locale)
        for message in template:
            if not message.id:
                continue
            entry = catalog.get(message.id, message.context)
            where = ", ".join(f"{f}:{n}" for f, n in message.locations[:1])
            label = message.id if isinstance(message.id, str) else message.id[0]
            if entry is None:
                found.append(f"{locale}: not in the catalogue: {label!r} ({where})")
            elif entry.fuzzy:
                found.append(f"{locale}: fuzzy: {label!r} ({where})")
            elif not all(form.strip() for form in _forms(entry)):
                found.append(f"{locale}: untranslated: {label!r} ({where})")
        if catalog.fuzzy:
            found.append(f"{locale}: the header is fuzzy (pybabel compile would skip it)")
        for message, errors in catalog.check():
            for error in errors:
                found.append(f"{locale}: {message.id!r}: {error}")
    return found


def compile_into(target: Path) -> list[Path]:
    """Write each locale's ``.mo`` under ``target`` (a ``locale`` folder); fuzzy
    messages are left out. Returns the files written."""
    written = []
    for locale in LOCALES:
        catalog = read(locale)
        out = target / locale / "LC_MESSAGES" / f"{DOMAIN}.mo"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as file:
            write_mo(file, catalog)
        written.append(out)
    return written


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        found = problems()
        for line in found:
            print(line)
        print(f"{len(found)} problem(s)" if found else "catalogues complete")
        return 1 if found else 0
    update()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
