"""The colours of bastion.css meet WCAG 2.2 AA in the light and the dark scheme: text and
links 4.5:1 against every background they are drawn on (1.4.3), the focus ring and the
borders of fields 3:1 against what surrounds them (1.4.11, 2.4.7). Ratios are computed
from the custom properties in the stylesheet, as WCAG defines them (relative luminance of
sRGB)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = (
    Path(__file__).resolve().parents[2] / "src" / "bastion" / "static" / "bastion.css"
).read_text()
TEXT, NON_TEXT = 4.5, 3.0

# (foreground, background, minimum): each pair the stylesheet draws.
PAIRS = [
    # Body text, headings, buttons, inputs: on the page, cards, hovered buttons.
    *(("--text", bg, TEXT) for bg in ("--bg", "--surface", "--hover")),
    # Hints, table headers, captions, the navigation.
    *(("--muted", bg, TEXT) for bg in ("--bg", "--surface", "--hover")),
    # Links, current tab, <summary>, badges (on --primary-soft).
    *(("--primary-dark", bg, TEXT) for bg in ("--bg", "--surface", "--hover", "--primary-soft")),
    # Hovered links; the status code of error pages.
    *(("--primary", bg, TEXT) for bg in ("--bg", "--surface")),
    # Primary buttons, and hovered ones.
    ("--on-primary", "--primary", TEXT),
    ("--on-primary", "--primary-dark", TEXT),
    # Danger buttons, error alerts and badges.
    *(("--danger", bg, TEXT) for bg in ("--bg", "--surface", "--danger-bg")),
    # Notices and "on"/"current" badges.
    *(("--ok", bg, TEXT) for bg in ("--surface", "--ok-bg")),
    # The focus ring (outline-offset: it is drawn on what surrounds the element).
    *(
        ("--focus", bg, NON_TEXT)
        for bg in ("--bg", "--surface", "--hover", "--danger-bg", "--ok-bg", "--primary-soft")
    ),
    # The border of text fields and of a focused one; the brand mark.
    *(("--input-border", bg, NON_TEXT) for bg in ("--bg", "--surface")),
    ("--primary", "--surface", NON_TEXT),
]


def schemes() -> dict[str, dict[str, str]]:
    """The custom properties of each scheme: the dark one redefines some of the light."""
    css = re.sub(r"/\*.*?\*/", "", CSS, flags=re.S)
    blocks = re.findall(r":root\s*\{(.*?)\}", css, re.S)
    assert len(blocks) == 2, "a light :root and a dark one"
    light, dark = (dict(re.findall(r"(--[a-z-]+)\s*:\s*([^;]+);", block)) for block in blocks)
    return {"light": light, "dark": {**light, **dark}}


def luminance(colour: str) -> float:
    match = re.fullmatch(r"#([0-9a-fA-F]{6})", colour.strip())
    assert match, f"{colour!r} is not #rrggbb"
    channels = [int(match.group(1)[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one: str, other: str) -> float:
    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_is_computed_as_wcag_defines_it() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    # The amber focus ring Bastion had before: too faint on white.
    assert contrast("#ffbf47", "#ffffff") < NON_TEXT


def test_both_schemes_define_every_colour_the_pairs_name() -> None:
    names = {name for pair in PAIRS for name in pair[:2]}
    for scheme in schemes().values():
        assert names <= set(scheme)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(("foreground", "background", "minimum"), PAIRS)
def test_each_colour_pair_meets_wcag_aa(
    scheme: str, foreground: str, background: str, minimum: float
) -> None:
    colours = schemes()[scheme]
    ratio = contrast(colours[foreground], colours[background])
    assert ratio >= minimum, (
        f"{scheme}: {foreground} {colours[foreground]} on {background} "
        f"{colours[background]} is {ratio:.2f}:1, below {minimum}:1"
    )


def test_the_dark_scheme_is_declared_to_the_browser() -> None:
    css = re.sub(r"/\*.*?\*/", "", CSS, flags=re.S)
    light, dark = re.findall(r":root\s*\{(.*?)\}", css, re.S)
    assert "color-scheme: light;" in light
    assert "color-scheme: dark;" in dark
    assert re.search(r"@media \(prefers-color-scheme: dark\)\s*\{\s*:root", css)
