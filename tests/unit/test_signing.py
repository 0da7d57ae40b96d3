"""bastion.signing: purpose-salted HMAC signatures with fallback secrets."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.clock import FakeClock
from bastion.exceptions import BastionError
from bastion.signing import BadSignature, SignatureExpired, Signer, TimestampSigner

SECRET = b"s" * 32
OLD_SECRET = b"o" * 32
OTHER_SECRET = b"x" * 32


@pytest.fixture
def signer() -> Signer:
    return Signer(SECRET, purpose="test")


def flip_last_char(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


# ---- Signer ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"", b"42", b"a.b.c", bytes(range(256)), b"\xff" * 5000])
def test_sign_then_unsign_returns_the_value(signer: Signer, value: bytes) -> None:
    assert signer.unsign(signer.sign(value)) == value


def test_signed_value_is_url_safe_ascii(signer: Signer) -> None:
    signed = signer.sign(bytes(range(256)))
    assert signed.isascii()
    assert set(signed) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_bad_signature_is_a_bastion_error() -> None:
    assert issubclass(BadSignature, BastionError)
    assert issubclass(SignatureExpired, BadSignature)


def test_tampered_mac_is_refused(signer: Signer) -> None:
    with pytest.raises(BadSignature):
        signer.unsign(flip_last_char(signer.sign(b"42")))


def test_tampered_value_is_refused(signer: Signer) -> None:
    signed = signer.sign(b"user:1")
    forged = signer.sign(b"user:2").split(".")[0] + "." + signed.split(".")[1]
    with pytest.raises(BadSignature):
        signer.unsign(forged)


def test_signature_for_another_purpose_is_refused() -> None:
    signed = Signer(SECRET, purpose="password-reset").sign(b"42")
    with pytest.raises(BadSignature):
        Signer(SECRET, purpose="email-verify").unsign(signed)


def test_signature_made_with_another_secret_is_refused(signer: Signer) -> None:
    signed = Signer(OTHER_SECRET, purpose="test").sign(b"42")
    with pytest.raises(BadSignature):
        signer.unsign(signed)


def test_mac_is_not_keyed_by_the_bare_secret(signer: Signer) -> None:
    import hashlib
    import hmac

    assert signer.mac(b"42") != hmac.new(SECRET, b"42", hashlib.sha256).digest()


def test_fallback_secret_still_verifies_after_rotation() -> None:
    signed = Signer(OLD_SECRET, purpose="test").sign(b"42")
    rotated = Signer(SECRET, [OLD_SECRET], purpose="test")
    assert rotated.unsign(signed) == b"42"


def test_new_signatures_use_the_current_secret_not_the_fallback() -> None:
    rotated = Signer(SECRET, [OLD_SECRET], purpose="test")
    signed = rotated.sign(b"42")
    assert Signer(SECRET, purpose="test").unsign(signed) == b"42"
    with pytest.raises(BadSignature):
        Signer(OLD_SECRET, purpose="test").unsign(signed)


def test_dropped_fallback_no_longer_verifies() -> None:
    signed = Signer(OLD_SECRET, purpose="test").sign(b"42")
    with pytest.raises(BadSignature):
        Signer(SECRET, purpose="test").unsign(signed)


def test_verify_mac_accepts_current_and_fallback_macs() -> None:
    rotated = Signer(SECRET, [OLD_SECRET], purpose="test")
    assert rotated.verify_mac(b"v", Signer(SECRET, purpose="test").mac(b"v"))
    assert rotated.verify_mac(b"v", Signer(OLD_SECRET, purpose="test").mac(b"v"))
    assert not rotated.verify_mac(b"v", Signer(OTHER_SECRET, purpose="test").mac(b"v"))
    assert not rotated.verify_mac(b"w", rotated.mac(b"v"))


@pytest.mark.parametrize("mac", [b"", b"short", b"\x00" * 33])
def test_verify_mac_refuses_wrong_length_macs(signer: Signer, mac: bytes) -> None:
    assert not signer.verify_mac(b"v", mac)


@pytest.mark.parametrize(
    "signed",
    [
        "",
        ".",
        "nodot",
        "NDI",  # a valid payload with no MAC at all
        "NDI.",
        "NDI.short",
        "NDI." + "A" * 44,  # too long MAC
        "NDI." + "!" * 43,  # not base64url
        "NDI." + "A" * 42 + "=",  # padding
        "NDI=." + "A" * 43,  # padded payload
        "N.DI." + "A" * 43,  # a dot inside the payload
        "N+I." + "A" * 43,  # standard, not url-safe, base64
        "NDJ." + "A" * 43,  # payload with non-zero trailing bits (non-canonical)
        "NDI." + "A" * 42 + "B",  # MAC with non-zero trailing bits
        "NDIé." + "A" * 43,  # non-ASCII
        "NDI.\u212a" + "A" * 42,  # Unicode look-alike
        "NDI\x00." + "A" * 43,
        " NDI." + "A" * 43,
        "A." + "A" * 43,  # payload length 1 mod 4 cannot be base64
    ],
)
def test_malformed_input_raises_bad_signature(signer: Signer, signed: str) -> None:
    with pytest.raises(BadSignature):
        signer.unsign(signed)


def test_non_string_input_raises_bad_signature(signer: Signer) -> None:
    with pytest.raises(BadSignature):
        signer.unsign(b"NDI.abc")  # type: ignore[arg-type]
    with pytest.raises(BadSignature):
        signer.unsign(None)  # type: ignore[arg-type]


def test_non_canonical_mac_encoding_of_a_genuine_signature_is_refused(signer: Signer) -> None:
    # The last base64 character of a 32-byte MAC carries 2 unused bits; changing them keeps
    # the decoded bytes but must not make a second valid spelling.
    signed = signer.sign(b"42")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signed[-1])
    for variant in range(last & ~3, (last & ~3) + 4):
        candidate = signed[:-1] + alphabet[variant]
        if candidate != signed:
            with pytest.raises(BadSignature):
                signer.unsign(candidate)


@given(st.text())
def test_unsign_raises_only_bad_signature_on_arbitrary_text(text: str) -> None:
    signer = Signer(SECRET, purpose="test")
    with pytest.raises(BadSignature):
        signer.unsign(text)


def test_repr_hides_the_secrets() -> None:
    signer = Signer(SECRET, [OLD_SECRET], purpose="test")
    for text in (repr(signer), str(signer)):
        assert "sss" not in text
        assert "ooo" not in text
    assert "test" in repr(signer)


def test_repr_of_timestamp_signer_hides_the_secrets() -> None:
    text = repr(TimestampSigner(SECRET, [OLD_SECRET], purpose="test"))
    assert "sss" not in text
    assert "ooo" not in text


def test_signer_keeps_no_reference_to_the_raw_secret() -> None:
    import gc

    signer = Signer(SECRET, [OLD_SECRET], purpose="test")
    reachable = gc.get_referents(signer) + gc.get_referents(signer._keys)
    assert SECRET not in reachable
    assert OLD_SECRET not in reachable


@pytest.mark.parametrize("purpose", ["", None])
def test_empty_purpose_is_refused(purpose: str) -> None:
    with pytest.raises(ValueError, match="purpose"):
        Signer(SECRET, purpose=purpose)


def test_empty_or_text_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        Signer(b"", purpose="test")
    with pytest.raises(TypeError, match="secret"):
        Signer("text", purpose="test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fallback"):
        Signer(SECRET, [b""], purpose="test")


def test_signing_text_instead_of_bytes_is_a_type_error(signer: Signer) -> None:
    with pytest.raises(TypeError):
        signer.sign("42")  # type: ignore[arg-type]


# ---- TimestampSigner ------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ts_signer(clock: FakeClock) -> TimestampSigner:
    return TimestampSigner(SECRET, purpose="test", clock=clock)


def test_timestamp_round_trip_reports_signing_time(
    ts_signer: TimestampSigner, clock: FakeClock
) -> None:
    signed = ts_signer.sign(b"42")
    clock.advance(10)
    assert ts_signer.unsign_timestamp(signed, max_age=60) == (b"42", int(clock.now) - 10)


def test_timestamp_within_max_age_is_accepted(ts_signer: TimestampSigner, clock: FakeClock) -> None:
    signed = ts_signer.sign(b"42")
    clock.advance(60)
    assert ts_signer.unsign(signed, max_age=60) == b"42"


def test_expired_timestamp_is_refused(ts_signer: TimestampSigner, clock: FakeClock) -> None:
    signed = ts_signer.sign(b"42")
    clock.advance(61)
    with pytest.raises(SignatureExpired) as caught:
        ts_signer.unsign(signed, max_age=60)
    assert caught.value.age == pytest.approx(61)


def test_without_max_age_old_signatures_still_verify(
    ts_signer: TimestampSigner, clock: FakeClock
) -> None:
    signed = ts_signer.sign(b"42")
    clock.advance(10**6)
    assert ts_signer.unsign(signed) == b"42"


def test_tampered_timestamp_is_refused_not_reported_expired(
    ts_signer: TimestampSigner, clock: FakeClock
) -> None:
    value, stamp, mac = ts_signer.sign(b"42").split(".")
    clock.advance(1000)
    with pytest.raises(BadSignature) as caught:
        ts_signer.unsign(f"{value}.{int(stamp) + 1000}.{mac}", max_age=60)
    assert not isinstance(caught.value, SignatureExpired)


def test_expired_forgery_is_bad_signature_not_expired(ts_signer: TimestampSigner) -> None:
    forged = TimestampSigner(OTHER_SECRET, purpose="test", clock=FakeClock(0)).sign(b"42")
    with pytest.raises(BadSignature) as caught:
        ts_signer.unsign(forged, max_age=60)
    assert not isinstance(caught.value, SignatureExpired)


def test_timestamp_signer_accepts_fallback_secret(clock: FakeClock) -> None:
    signed = TimestampSigner(OLD_SECRET, purpose="test", clock=clock).sign(b"42")
    rotated = TimestampSigner(SECRET, [OLD_SECRET], purpose="test", clock=clock)
    assert rotated.unsign(signed, max_age=60) == b"42"


def test_timestamp_signature_for_another_purpose_is_refused(clock: FakeClock) -> None:
    signed = TimestampSigner(SECRET, purpose="a", clock=clock).sign(b"42")
    with pytest.raises(BadSignature):
        TimestampSigner(SECRET, purpose="b", clock=clock).unsign(signed)


def test_plain_and_timestamp_signers_do_not_accept_each_other(
    signer: Signer, ts_signer: TimestampSigner
) -> None:
    with pytest.raises(BadSignature):
        ts_signer.unsign(signer.sign(b"42"))
    with pytest.raises(BadSignature):
        signer.unsign(ts_signer.sign(b"42"))


def test_plain_mac_cannot_forge_a_timestamped_value(
    signer: Signer, ts_signer: TimestampSigner
) -> None:
    # Same secret and purpose: the kinds are keyed apart, so the mac() primitive is no oracle.
    head = ts_signer.sign(b"42").rsplit(".", 1)[0]
    forged = head + "." + signer.sign(head.encode()).rsplit(".", 1)[1]
    with pytest.raises(BadSignature):
        ts_signer.unsign(forged)


@pytest.mark.parametrize(
    "signed",
    [
        "",
        "NDI." + "A" * 43,  # no timestamp part
        "NDI..",
        "NDI.." + "A" * 43,
        "NDI.-1." + "A" * 43,
        "NDI.+1." + "A" * 43,
        "NDI.01." + "A" * 43,
        "NDI.1_0." + "A" * 43,
        "NDI.\u0661." + "A" * 43,  # Arabic-Indic digit one: int() would accept it
        "NDI. 1." + "A" * 43,
        "NDI.1e3." + "A" * 43,
        "NDI.99999999999999999999." + "A" * 43,
        "NDI.1." + "A" * 42 + "=",
    ],
)
def test_malformed_timestamped_input_raises_bad_signature(
    ts_signer: TimestampSigner, signed: str
) -> None:
    with pytest.raises(BadSignature):
        ts_signer.unsign(signed, max_age=60)


@given(st.text())
def test_timestamp_unsign_raises_only_bad_signature_on_arbitrary_text(text: str) -> None:
    ts_signer = TimestampSigner(SECRET, purpose="test", clock=FakeClock())
    with pytest.raises(BadSignature):
        ts_signer.unsign(text, max_age=60)


def test_signing_imports_neither_fastapi_nor_starlette() -> None:
    code = (
        "import sys, bastion.signing; "
        "sys.exit(any(m.split('.')[0] in ('fastapi', 'starlette') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
