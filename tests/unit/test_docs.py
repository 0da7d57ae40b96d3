"""The documentation stays true to the code."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from bastion.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def docs_site() -> ModuleType:
    """tools/docs_site.py, the site's mkdocs hooks."""
    spec = importlib.util.spec_from_file_location("docs_site", ROOT / "tools" / "docs_site.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_is_documented_in_docs_settings() -> None:
    # The page's table is generated from the settings class when the site is built.
    assert "<!-- generated: settings -->" in (ROOT / "docs" / "settings.md").read_text()
    text = docs_site().settings_table()
    documented = set(re.findall(r"`(BASTION_[A-Z_]+)`", text))
    expected = {f"BASTION_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set()
    assert documented - expected == set()


def test_every_setting_has_a_description_in_the_settings_class() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []


def test_readme_links_only_existing_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"`(docs/[a-z_/-]+\.md)`", readme):
        assert (ROOT / link).is_file(), link
