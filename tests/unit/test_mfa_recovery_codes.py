"""bastion.mfa.recovery_codes: generation, generous reading and keyed hashes."""

from __future__ import annotations

import math
import re

import pytest

from bastion.mfa import recovery_codes
from bastion.mfa.recovery_codes import RecoveryCodeHasher

SHAPE = re.compile(r"[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}")


def test_ten_distinct_codes_of_sixty_bits_each() -> None:
    codes = recovery_codes.generate()

    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(SHAPE.fullmatch(code) for code in codes)
    assert 12 * math.log2(32) >= 50


@pytest.mark.parametrize(
    "typed",
    ["abcd-efgh-jk01", "ABCD-EFGH-JK01", "abcd efgh jk01", " abcdefghjk01 ", "abcd-efgh-jkoi"],
)
def test_codes_are_read_in_any_case_without_spaces_or_dashes(typed: str) -> None:
    assert recovery_codes.normalize(typed) == "abcdefghjk01"


@pytest.mark.parametrize(
    "typed", ["", "abcd-efgh-jk0", "abcd-efgh-jk012", "abcd-efgh-jku1", "ab!d"]
)
def test_anything_else_is_not_a_code(typed: str) -> None:
    assert recovery_codes.normalize(typed) is None
    assert RecoveryCodeHasher(b"s" * 32).candidates(typed) == []


def test_hash_is_keyed_hex_of_64_characters() -> None:
    code = recovery_codes.generate(1)[0]

    one = RecoveryCodeHasher(b"a" * 32).hash(code)
    other = RecoveryCodeHasher(b"b" * 32).hash(code)

    assert re.fullmatch(r"[0-9a-f]{64}", one)
    assert one != other
    assert RecoveryCodeHasher(b"a" * 32).hash(code.upper().replace("-", " ")) == one


def test_candidates_include_the_hash_under_a_fallback_secret() -> None:
    code = recovery_codes.generate(1)[0]
    before_rotation = RecoveryCodeHasher(b"old" * 11).hash(code)

    after = RecoveryCodeHasher(b"new" * 11, [b"old" * 11])

    assert before_rotation in after.candidates(code)
    assert after.hash(code) != before_rotation
