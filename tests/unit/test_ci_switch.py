"""The CI switch: every usual spelling of true turns skips of backend tests into failures."""

from __future__ import annotations

import pytest

from tests.conftest import ci_requested


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on", " True "])
def test_ci_switch_accepts_any_spelling_of_true(value: str) -> None:
    assert ci_requested(value)


@pytest.mark.parametrize("value", [None, "", "0", "false", "no", "off"])
def test_ci_switch_is_off_for_false_or_unset(value: str | None) -> None:
    assert not ci_requested(value)
