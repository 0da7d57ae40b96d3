"""The documentation stays true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from bastion.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_in_docs_settings() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"`(BASTION_[A-Z_]+)`", text))
    expected = {f"BASTION_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set()
    assert documented - expected == set()


def test_every_setting_has_a_description_in_the_settings_class() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []


def test_readme_links_only_existing_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"`(docs/[a-z_-]+\.md)`", readme):
        assert (ROOT / link).is_file(), link
