"""Regenerate ``unicode-security.txt.gz`` from ICU's copy of the Unicode security data.

Not used at run time. ICU compiles UTS #39 ``confusables.txt`` and the Unicode Character
Database into its data; this script reads them back through PyICU and writes the four
tables :mod:`bastion.confusables` needs, in a compact text form::

    pip install pyicu-wheels            # into a scratch environment, not Bastion's
    python src/bastion/data/generate_unicode_security.py

Sections (code points in hex, ranges as ``FIRST..LAST``):

``@skeleton``            ``CP PROTOTYPE...``: the NFD of the character's confusables.txt
                         prototype, for every character that is its own NFD and maps to
                         something else (UTS #39 section 4, "skeleton", steps 2-3).
``@script_extensions``   ``RANGE SCRIPT...``: the Script_Extensions property (ISO 15924 short
                         names) of every assigned code point, runs of equal values merged.
``@default_ignorable``   ``RANGE``: Default_Ignorable_Code_Point (invisible characters).
``@soft_dotted``         ``RANGE``: Soft_Dotted (letters whose dot a combining dot hides).
"""

from __future__ import annotations

import gzip
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "unicode-security.txt.gz"
LAST_CODE_POINT = 0x10FFFF


def _code_points() -> Iterator[int]:
    for cp in range(LAST_CODE_POINT + 1):
        if not 0xD800 <= cp <= 0xDFFF:  # surrogates never occur in text
            yield cp


def _ranges(has: Callable[[int], bool]) -> Iterator[str]:
    start: int | None = None
    for cp in range(LAST_CODE_POINT + 2):
        inside = cp <= LAST_CODE_POINT and has(cp)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            yield f"{start:04X}..{cp - 1:04X}"
            start = None


def generate(icu: Any) -> list[str]:
    spoof = icu.SpoofChecker()
    nfd = icu.Normalizer2.getNFDInstance()
    unassigned = icu.UCharCategory.UNASSIGNED
    lines = [
        "# Unicode security data for bastion.confusables; see README.md beside this file.",
        f"# ICU {icu.ICU_VERSION}, Unicode {icu.UNICODE_VERSION}; regenerate with"
        " generate_unicode_security.py.",
        "@skeleton",
    ]
    for cp in _code_points():
        char = chr(cp)
        if icu.Char.charType(cp) == unassigned or nfd.normalize(char) != char:
            continue
        prototype = spoof.getSkeleton(0, char)  # NFD(prototype(char)) for an NFD character
        if prototype != char:
            lines.append(f"{cp:04X} " + " ".join(f"{ord(c):04X}" for c in prototype))

    lines.append("@script_extensions")
    names: dict[int, str] = {}

    def script_names(cp: int) -> str:
        codes = icu.Script.getScriptExtensions(cp)
        for code in codes:
            names.setdefault(code, icu.Script(code).getShortName())
        return " ".join(sorted(names[code] for code in codes))

    run_start, run_value = 0, ""
    for cp in range(LAST_CODE_POINT + 2):
        assigned = cp <= LAST_CODE_POINT and icu.Char.charType(cp) != unassigned
        value = script_names(cp) if assigned else ""
        if value != run_value:
            if run_value:
                lines.append(f"{run_start:04X}..{cp - 1:04X} {run_value}")
            run_start, run_value = cp, value

    lines.append("@default_ignorable")
    ignorable = icu.UProperty.DEFAULT_IGNORABLE_CODE_POINT
    lines += _ranges(lambda cp: bool(icu.Char.hasBinaryProperty(cp, ignorable)))
    lines.append("@soft_dotted")
    soft_dotted = icu.UProperty.SOFT_DOTTED
    lines += _ranges(lambda cp: bool(icu.Char.hasBinaryProperty(cp, soft_dotted)))
    return lines


def main() -> None:
    icu = importlib.import_module("icu")
    text = "\n".join(generate(icu)) + "\n"
    # mtime=0: the same data always gives the same bytes.
    OUTPUT.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    print(f"wrote {OUTPUT.name}: {len(text.splitlines())} lines")


if __name__ == "__main__":
    main()
