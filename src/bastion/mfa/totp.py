"""Time-based one-time passwords (RFC 6238) as authenticator apps know them.

30-second steps, 6 digits, HMAC-SHA-1: the parameters every app supports (most ignore
other values in the ``otpauth://`` URI). A code is accepted for the current step and one
step either side (clock drift, a code typed as it changed); :func:`matching_step` says
which step matched, so the caller can refuse that step and older ones from then on.

The QR code is inline SVG made here (segno): the secret never leaves the server for an
image service.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

import pyotp
import segno

from bastion.clock import Clock

__all__ = [
    "DIGITS",
    "STEP_SECONDS",
    "TOTPEnrolment",
    "enrolment",
    "matching_step",
    "new_secret",
    "normalize_code",
]

STEP_SECONDS = 30
DIGITS = 6
# Steps accepted either side of the current one.
WINDOW = 1
# 160 bits, the HMAC-SHA-1 key size RFC 4226 recommends; 32 base32 characters.
_SECRET_LENGTH = 32


@dataclass(frozen=True, slots=True)
class TOTPEnrolment:
    """What an enrolment page shows: the base32 secret for typing in, the otpauth URI
    and that URI as a QR code (an ``<svg>`` element)."""

    secret: str = field(repr=False)
    uri: str = field(repr=False)
    qr_svg: str = field(repr=False)


def new_secret() -> str:
    return pyotp.random_base32(_SECRET_LENGTH)


def enrolment(secret: str, account_name: str, issuer: str) -> TOTPEnrolment:
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account_name, issuer_name=issuer
    )
    # Medium error correction survives a slightly blurred phone camera; no external
    # service, no data: URI (the page's CSP needs nothing extra).
    qr_svg = segno.make(uri, error="m").svg_inline(scale=4, border=4, light="#fff")
    return TOTPEnrolment(secret=secret, uri=uri, qr_svg=qr_svg)


def normalize_code(code: str) -> str | None:
    """The six ASCII digits of ``code`` without spaces (apps show "123 456"), or None."""
    digits = "".join(code.split())
    if len(digits) != DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return digits


def current_step(clock: Clock) -> int:
    return int(clock() // STEP_SECONDS)


def matching_step(secret: str, code: str, clock: Clock) -> int | None:
    """The time step (now, one before or one after) whose code is ``code``, or None.

    When two steps share a code (one chance in a million), the newest wins: refusing it
    afterwards refuses the older one too.
    """
    digits = normalize_code(code)
    if digits is None:
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    now = current_step(clock)
    matched = None
    # Every candidate is compared, in constant time, whatever matched before it.
    for step in range(now - WINDOW, now + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), digits):
            matched = step
    return matched


def code_at(secret: str, step: int) -> str:
    """The code of ``step`` (for tests and tools; the server never shows codes)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)
