"""Name normalisation and the UTC column type, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from bastion.exceptions import UserError
from bastion.users.models import (
    UTCDateTime,
    normalize_email,
    normalize_role,
    normalize_username,
)


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("Alice", "alice"),
        ("  ALICE\t", "alice"),
        ("Ａｌｉｃｅ", "alice"),  # fullwidth
        ("ﬁnn", "finn"),  # ligature
        ("Straße", "strasse"),
        ("ǅemal", "džemal"),  # titlecase digraph
        ("jörg", "jörg"),
        ("jo\u0308rg", "jörg"),  # decomposed umlaut
        ("user@example.org", "user@example.org"),
    ],
)
def test_username_key_folds_case_and_compatibility_forms(typed: str, key: str) -> None:
    assert normalize_username(typed) == key


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("two words", "spaces"),
        ("no\u00a0break", "spaces"),
        ("ideographic\u3000space", "spaces"),
        ("nul\x00byte", "control"),
        ("bell\x07", "control"),
        ("zero\u200bwidth", "control"),
        ("right\u202eleft", "control"),
        ("x" * 151, "longer than 150"),
        ("㍿" * 40, "longer than 150"),  # 40 characters typed, 160 once folded
    ],
)
def test_unusable_usernames_are_refused_with_a_safe_message(name: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        normalize_username(name)
    if name.strip():
        assert name.strip() not in str(caught.value)


def test_username_of_150_characters_is_accepted() -> None:
    assert normalize_username("X" * 150) == "x" * 150


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("Alice@Example.ORG", "alice@example.org"),
        ("  bob@example.org ", "bob@example.org"),
        ("ｂｏｂ@example.org", "bob@example.org"),
    ],
)
def test_email_key_is_lower_case_nfkc(typed: str, key: str) -> None:
    assert normalize_email(typed) == key


@pytest.mark.parametrize(
    "email", ["", "no-at-sign", "@example.org", "bob@", "bo b@example.org", "a\x00@b.c"]
)
def test_malformed_emails_are_refused(email: str) -> None:
    with pytest.raises(UserError):
        normalize_email(email)


@pytest.mark.parametrize("role", ["", " ", "two words", "x" * 65, "tab\tbed"])
def test_unusable_role_names_are_refused(role: str) -> None:
    with pytest.raises(UserError):
        normalize_role(role)


def test_role_names_are_kept_exactly_apart_from_surrounding_space() -> None:
    assert normalize_role(" Admin ") == "Admin"


def test_utc_column_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2024, 1, 1), sqlite.dialect())


def test_utc_column_stores_utc_and_reads_back_aware() -> None:
    column = UTCDateTime()
    plus_two = datetime(2024, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))

    stored = column.process_bind_param(plus_two, sqlite.dialect())
    naive_read = column.process_result_value(datetime(2024, 1, 1, 12, 0), sqlite.dialect())
    aware_read = column.process_result_value(plus_two, sqlite.dialect())

    assert stored == datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert stored is not None
    assert stored.tzinfo == UTC
    assert naive_read == datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert aware_read is not None
    assert aware_read.tzinfo == UTC
