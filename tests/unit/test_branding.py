"""BASTION_SITE_NAME's rules, and docs/templates.md kept true to the templates and CSS."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jinja2 import meta, nodes
from pydantic import ValidationError

from bastion.fastapi.templating import Templates
from bastion.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "src" / "bastion" / "templates"
DOC = (ROOT / "docs" / "templates.md").read_text()
EXAMPLE_BASE = ROOT / "docs" / "examples" / "branding" / "templates" / "base.html"


def section(title: str) -> str:
    """The text of the docs/templates.md section with this heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.M | re.S)
    assert match, title
    return match.group(1)


def table(title: str) -> dict[str, set[str]]:
    """First cell of each row of the section's table -> the names in backticks in the rest."""
    rows: dict[str, set[str]] = {}
    for line in section(title).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        first = re.fullmatch(r"`([^`]+)`", cells[0]) if line.startswith("|") else None
        if first:
            rest = " ".join(cells[1:])
            rows[first.group(1)] = set(re.findall(r"`([a-z_][a-z_0-9]*)", rest))
    return rows


# -- BASTION_SITE_NAME -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "x" * 101,
        "Acme\nNotes",
        "Acme\r\nBcc: everyone@example.com",
        "Acme\tNotes",
        "Acme\x00",
        "Acme\x85Notes",  # NEL, a C1 control
        "Acme\u2028Notes",  # line separator
        "\u202eseton emca",  # right-to-left override
        "Acme\u2066Notes",  # left-to-right isolate
    ],
)
def test_a_site_name_must_be_one_printable_line(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(site_name=name)
    assert "site_name" in str(refused.value)
    if name.strip():
        assert name.strip() not in str(refused.value)  # the value is never echoed


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("  Acme Notes  ", "Acme Notes"),
        ("Café 東京 🚀", "Café 東京 🚀"),
        ("Acme & <Co>", "Acme & <Co>"),
        ("x" * 100, "x" * 100),
    ],
)
def test_a_site_name_is_kept_without_surrounding_spaces(given: str, kept: str) -> None:
    assert Settings(site_name=given).site_name == kept


def test_the_site_name_defaults_to_bastion() -> None:
    assert Settings.model_fields["site_name"].default == "Bastion"


# -- docs/templates.md -----------------------------------------------------------------------


def test_every_template_is_documented_and_every_documented_one_exists() -> None:
    documented = set(table("The templates"))
    shipped = {path.name for path in TEMPLATES.glob("*.html")}
    assert shipped - documented == set(), "templates missing from docs/templates.md"
    assert documented - shipped == set(), "docs/templates.md lists templates that are gone"


def test_every_variable_a_template_reads_is_documented() -> None:
    env = Templates().env
    common = set(table("Variables every page receives"))
    documented = table("The templates")
    for path in sorted(TEMPLATES.glob("*.html")):
        tree = env.parse(path.read_text())
        # Names a template sets itself (Jinja reports a {% set %} inside a block as read).
        assigned = {n.name for a in tree.find_all(nodes.Assign) for n in a.find_all(nodes.Name)}
        # Macros it imports ({% from "form_macros.html" import error_summary %}).
        for imported in tree.find_all(nodes.FromImport):
            assigned |= {n if isinstance(n, str) else n[1] for n in imported.names}
        read = meta.find_undeclared_variables(tree) - assigned
        undocumented = read - common - documented.get(path.name, set())
        assert undocumented == set(), f"{path.name} reads undocumented {sorted(undocumented)}"


def test_every_block_of_base_html_is_documented() -> None:
    tree = Templates().env.parse((TEMPLATES / "base.html").read_text())
    blocks = {block.name for block in tree.find_all(nodes.Block)}
    assert blocks == set(table("Blocks of `base.html`"))


def test_the_docs_snippet_is_the_example_file() -> None:
    snippet = re.search(r"```jinja\n(.*?)```", DOC, re.S)
    assert snippet is not None
    example = EXAMPLE_BASE.read_text().splitlines()
    for line in snippet.group(1).splitlines():
        assert line in example, line


def test_bastion_css_keeps_every_colour_in_a_custom_property() -> None:
    """An application rebrands the pages by setting variables: no colour may hide
    elsewhere in the stylesheet. The dark scheme redefines the same properties in a
    ``:root`` of its own, inside ``@media (prefers-color-scheme: dark)``."""
    css = (ROOT / "src" / "bastion" / "static" / "bastion.css").read_text()
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    roots = list(re.finditer(r":root\s*\{(.*?)\}", css, re.S))
    assert len(roots) == 2  # light, then dark
    outside = css
    for root in roots:
        outside = outside.replace(root.group(0), "")
    colours = re.findall(r"#[0-9a-fA-F]{3,8}\b|\brgba?\(|\bhsla?\(", outside)
    assert colours == []
    light, dark = (set(re.findall(r"(--[a-z-]+)\s*:", root.group(1))) for root in roots)
    assert dark <= light  # the dark scheme only redefines properties
    dark_media = re.search(r"@media \(prefers-color-scheme: dark\)\s*\{\s*:root", css)
    assert dark_media is not None
    used = set(re.findall(r"var\((--[a-z-]+)\)", outside))
    assert used <= light
    assert {f"--{name}" for name in re.findall(r"`--([a-z-]+)`", DOC)} == light
