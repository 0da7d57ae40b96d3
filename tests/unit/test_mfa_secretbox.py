"""bastion.mfa.secretbox: AES-GCM sealing bound to a purpose, an owner and the secrets."""

from __future__ import annotations

import base64

import pytest

from bastion.mfa.secretbox import SecretBox, SecretBoxError

OLD = b"o" * 32
NEW = b"n" * 32


def test_sealed_value_opens_for_its_owner() -> None:
    box = SecretBox(NEW, purpose="totp")

    opened = box.open(box.seal(b"JBSWY3DPEHPK3PXP", context="7"), context="7")

    assert opened.value == b"JBSWY3DPEHPK3PXP"
    assert opened.stale is False


def test_sealing_twice_gives_different_ciphertexts() -> None:
    box = SecretBox(NEW, purpose="totp")

    assert box.seal(b"same", context="7") != box.seal(b"same", context="7")


def test_sealed_value_is_refused_for_another_user() -> None:
    box = SecretBox(NEW, purpose="totp")
    sealed = box.seal(b"secret", context="7")

    with pytest.raises(SecretBoxError):
        box.open(sealed, context="8")


def test_sealed_value_is_refused_for_another_purpose() -> None:
    sealed = SecretBox(NEW, purpose="totp").seal(b"secret", context="7")

    with pytest.raises(SecretBoxError):
        SecretBox(NEW, purpose="other").open(sealed, context="7")


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampered_value_is_refused(position: int) -> None:
    box = SecretBox(NEW, purpose="totp")
    sealed = box.seal(b"secret", context="7")
    raw = bytearray(base64.urlsafe_b64decode(sealed[3:] + "=" * (-len(sealed[3:]) % 4)))
    raw[position] ^= 1
    tampered = "v1." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()

    with pytest.raises(SecretBoxError):
        box.open(tampered, context="7")


@pytest.mark.parametrize("sealed", ["", "v1.", "v1.!!!!", "v2.AAAA", "v1.AAAA", "plain"])
def test_malformed_value_is_refused(sealed: str) -> None:
    with pytest.raises(SecretBoxError):
        SecretBox(NEW, purpose="totp").open(sealed, context="7")


def test_value_sealed_before_rotation_opens_with_the_old_secret_as_fallback() -> None:
    sealed = SecretBox(OLD, purpose="totp").seal(b"secret", context="7")
    rotated = SecretBox(NEW, [OLD], purpose="totp")

    opened = rotated.open(sealed, context="7")

    assert opened.value == b"secret"
    assert opened.stale is True  # to be sealed again under the new secret
    assert rotated.open(rotated.seal(b"secret", context="7"), context="7").stale is False


def test_value_sealed_under_a_dropped_secret_is_refused() -> None:
    sealed = SecretBox(OLD, purpose="totp").seal(b"secret", context="7")

    with pytest.raises(SecretBoxError):
        SecretBox(NEW, purpose="totp").open(sealed, context="7")


def test_repr_shows_no_key() -> None:
    assert repr(SecretBox(NEW, [OLD], purpose="totp")) == "SecretBox(purpose='totp', fallbacks=1)"
