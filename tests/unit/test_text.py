"""Cleaning request text for storage (bastion.text)."""

from __future__ import annotations

import pytest

from bastion.text import REPLACEMENT, clean_optional, clean_text


@pytest.mark.parametrize(
    "char",
    ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f", chr(0xD800), chr(0xDFFF)],
)
def test_controls_and_lone_surrogates_are_replaced(char: str) -> None:
    cleaned = clean_text(f"a{char}b")

    assert cleaned == f"a{REPLACEMENT}b"
    cleaned.encode("utf-8")  # storable by every driver


@pytest.mark.parametrize(
    "text", ["alice", "Mozilla/5.0 (X11; Linux)", "j\u00f6rg \u4e2d \U0001f600"]
)
def test_printable_text_is_kept(text: str) -> None:
    assert clean_text(text) == text


def test_length_is_kept() -> None:
    text = "\x00" * 10 + "x"

    assert len(clean_text(text)) == len(text)


def test_none_stays_none() -> None:
    assert clean_optional(None) is None
    assert clean_optional("a\x00") == "a\ufffd"
