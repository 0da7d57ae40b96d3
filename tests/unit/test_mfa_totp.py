"""bastion.mfa.totp: RFC 6238 codes, the accepted window and the enrolment QR code."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from bastion.clock import FakeClock
from bastion.mfa import totp

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_rfc_6238_test_vector() -> None:
    # RFC 6238 appendix B, SHA-1 seed "12345678901234567890", T = 59 s: 94287082 (8 digits).
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp.code_at(secret, 59 // 30) == "287082"


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_code_of_the_current_step_or_one_either_side_matches(offset: int) -> None:
    clock = FakeClock(1_700_000_000.0)
    now = totp.current_step(clock)

    assert totp.matching_step(SECRET, totp.code_at(SECRET, now + offset), clock) == now + offset


@pytest.mark.parametrize("offset", [-2, 2, -10])
def test_code_two_steps_away_is_refused(offset: int) -> None:
    clock = FakeClock(1_700_000_000.0)
    now = totp.current_step(clock)

    assert totp.matching_step(SECRET, totp.code_at(SECRET, now + offset), clock) is None


def test_code_matches_what_an_authenticator_app_shows() -> None:
    clock = FakeClock(1_700_000_123.0)

    code = pyotp.TOTP(SECRET).at(clock.now)

    assert totp.matching_step(SECRET, code, clock) == totp.current_step(clock)


@pytest.mark.parametrize(
    ("typed", "normal"),
    [("123456", "123456"), ("123 456", "123456"), (" 123456\n", "123456")],
)
def test_codes_are_read_with_spaces(typed: str, normal: str) -> None:
    assert totp.normalize_code(typed) == normal


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "12345a", "١٢٣٤٥٦", "12-456"])
def test_anything_but_six_digits_is_not_a_code(typed: str) -> None:
    assert totp.normalize_code(typed) is None
    assert totp.matching_step(SECRET, typed, FakeClock()) is None


def test_new_secrets_are_160_bits_of_base32_and_differ() -> None:
    one, two = totp.new_secret(), totp.new_secret()

    assert len(base64.b32decode(one)) == 20
    assert one != two


def test_enrolment_names_the_issuer_and_account_and_draws_an_inline_svg() -> None:
    enrolment = totp.enrolment(SECRET, "alice", "Example Site")

    uri = urlsplit(enrolment.uri)
    query = parse_qs(uri.query)
    assert uri.scheme == "otpauth"
    assert uri.netloc == "totp"
    assert query["secret"] == [SECRET]
    assert query["issuer"] == ["Example Site"]
    assert uri.path == "/Example%20Site:alice"
    assert enrolment.qr_svg.startswith("<svg")
    assert "http" not in enrolment.qr_svg  # nothing fetched from anywhere
    assert SECRET not in repr(enrolment)
