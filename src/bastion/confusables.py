"""Look-alike detection for identifiers, after Unicode Technical Standard #39.

- :func:`skeleton`: two strings that look alike have the same skeleton ("admin" spelled with
  a Cyrillic a U+0430, with a dotless i U+0131, or plainly: all give "adrnin"). Bastion
  keeps a digest of each user name's skeleton under a unique index, so a look-alike of an
  existing name cannot be registered, even by two concurrent requests.
- :func:`mixes_scripts`: whether a string fails UTS #39's "Highly Restrictive" level (letters
  of one script, or Latin with Han plus Japanese kana, Bopomofo or Hangul).
- :func:`has_invisible`: default-ignorable characters (zero-width, fillers, variation
  selectors), which render as nothing.

The data (``bastion/data/unicode-security.txt.gz``) is generated from ICU's copy of UTS #39
``confusables.txt`` and the Unicode Character Database; ``bastion/data/README.md`` names the
versions. A skeleton is for comparison only: it is not a display form.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

DATA_FILE = "data/unicode-security.txt.gz"

# UTS #39 section 5.1, augmented script sets: Han, kana, Hangul and Bopomofo also count as
# the writing systems they belong to (Japanese, Korean, Han with Bopomofo).
_AUGMENTED = {
    "Hani": frozenset({"Hani", "Hanb", "Jpan", "Kore"}),
    "Hira": frozenset({"Hira", "Jpan"}),
    "Kana": frozenset({"Kana", "Jpan"}),
    "Hang": frozenset({"Hang", "Kore"}),
    "Bopo": frozenset({"Bopo", "Hanb"}),
}
_CJK = frozenset({"Hanb", "Jpan", "Kore"})
_ANY_SCRIPT = frozenset({"Zyyy", "Zinh"})  # Common and Inherited go with every script
_UNASSIGNED = frozenset({"Zzzz"})

COMBINING_DOT_ABOVE = "\u0307"
# Letters whose own dot hides a combining dot above (ICU's "hidden overlay" check), besides
# the Soft_Dotted ones: casefolding "İ" gives "i" + U+0307, which looks just like "i".
_DOTTED_LEADS = frozenset("ijl\u0131\u0237")  # and dotless i, dotless j
_DOT_CLASS = unicodedata.combining(COMBINING_DOT_ABOVE)  # 230, "above"


@dataclass(frozen=True, slots=True)
class _Ranges:
    """Sorted, disjoint code point ranges, each with a value."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    values: tuple[frozenset[str], ...]

    def find(self, char: str) -> frozenset[str] | None:
        cp = ord(char)
        at = bisect.bisect_right(self.starts, cp) - 1
        if at >= 0 and cp <= self.ends[at]:
            return self.values[at]
        return None


@dataclass(frozen=True, slots=True)
class _Tables:
    prototypes: dict[str, str]
    scripts: _Ranges
    ignorable: _Ranges
    soft_dotted: _Ranges


def _parse_ranges(lines: list[str]) -> _Ranges:
    starts: list[int] = []
    ends: list[int] = []
    values: list[frozenset[str]] = []
    for line in lines:
        span, *names = line.split()
        first, _, last = span.partition("..")
        starts.append(int(first, 16))
        ends.append(int(last or first, 16))
        values.append(frozenset(names))
    return _Ranges(tuple(starts), tuple(ends), tuple(values))


@cache
def _tables() -> _Tables:
    raw = resources.files("bastion").joinpath(DATA_FILE).read_bytes()
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        if line.startswith("@"):
            current = sections.setdefault(line[1:], [])
        elif line and not line.startswith("#"):
            current.append(line)
    prototypes = {}
    for line in sections["skeleton"]:
        source, *target = line.split()
        prototypes[chr(int(source, 16))] = "".join(chr(int(cp, 16)) for cp in target)
    return _Tables(
        prototypes=prototypes,
        scripts=_parse_ranges(sections["script_extensions"]),
        ignorable=_parse_ranges(sections["default_ignorable"]),
        soft_dotted=_parse_ranges(sections["soft_dotted"]),
    )


def is_default_ignorable(char: str) -> bool:
    return _tables().ignorable.find(char) is not None


def has_invisible(text: str) -> bool:
    """Whether ``text`` holds a Default_Ignorable_Code_Point (it renders as nothing)."""
    return any(is_default_ignorable(char) for char in text)


def skeleton(text: str) -> str:
    """The UTS #39 skeleton of ``text`` (Unicode 15.1 and later): NFD, default-ignorable
    characters removed, each character replaced by its confusables.txt prototype, NFD again.

    One addition, after ICU's "hidden overlay" check: a combining dot above that follows a
    letter already dotted (``i``, ``j``, ``l`` and the Soft_Dotted letters) is invisible, so it
    is dropped; ``ADMİN`` (whose case fold is ``admi̇n``) then looks like ``admin``, as it does.
    """
    tables = _tables()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(
        tables.prototypes.get(char, char)
        for char in decomposed
        if tables.ignorable.find(char) is None
    )
    return _drop_hidden_dots(unicodedata.normalize("NFD", mapped))


def skeleton_digest(text: str) -> str:
    """SHA-256 (hex) of :func:`skeleton`: fixed-width, for a unique index."""
    return hashlib.sha256(skeleton(text).encode("utf-8", "surrogatepass")).hexdigest()


def _drop_hidden_dots(text: str) -> str:
    soft_dotted = _tables().soft_dotted
    kept: list[str] = []
    after_dotted_letter = False
    for char in text:
        if char == COMBINING_DOT_ABOVE and after_dotted_letter:
            continue
        # Marks below (other combining classes) sit between a letter and its dot in NFD.
        if unicodedata.combining(char) in (0, _DOT_CLASS):
            after_dotted_letter = char in _DOTTED_LEADS or soft_dotted.find(char) is not None
        kept.append(char)
    return "".join(kept)


def _script_set(char: str) -> frozenset[str] | None:
    """The augmented Script_Extensions of ``char``; None when it goes with any script."""
    scripts = _tables().scripts.find(char)
    if scripts is None:
        return _UNASSIGNED
    if scripts <= _ANY_SCRIPT:
        return None
    augmented = set(scripts)
    for script in scripts:
        augmented |= _AUGMENTED.get(script, frozenset())
    return frozenset(augmented)


def _resolved_scripts(text: str, *, ignoring: str | None = None) -> frozenset[str] | None:
    """UTS #39 section 5.1: the scripts every character of ``text`` belongs to (None: any);
    characters of script ``ignoring`` are left out."""
    resolved: frozenset[str] | None = None
    for char in text:
        scripts = _script_set(char)
        if scripts is None or (ignoring is not None and ignoring in scripts):
            continue
        resolved = scripts if resolved is None else resolved & scripts
    return resolved


def mixes_scripts(text: str) -> bool:
    """Whether ``text`` is below UTS #39's "Highly Restrictive" level (section 5.2).

    Allowed: letters of a single script (with digits, punctuation and other characters common
    to all scripts), or Latin together with Han and Hiragana/Katakana, Han and Bopomofo, or
    Han and Hangul. Refused, for example: Latin with Cyrillic or Greek letters ("admin" with
    a Cyrillic a).
    """
    resolved = _resolved_scripts(text)
    if resolved is None or resolved:
        return False
    without_latin = _resolved_scripts(text, ignoring="Latn")
    return without_latin is not None and not (without_latin & _CJK)


__all__ = [
    "COMBINING_DOT_ABOVE",
    "has_invisible",
    "is_default_ignorable",
    "mixes_scripts",
    "skeleton",
    "skeleton_digest",
]
