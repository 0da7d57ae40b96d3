"""Authentication method names (RFC 8176 ``amr`` values) and how pages show them."""

from __future__ import annotations

from collections.abc import Iterable

from bastion.i18n import lazy

PASSWORD = "pwd"  # noqa: S105 - a method name
OTP = "otp"  # a TOTP code
# Not in RFC 8176's registry (which it allows): "otp" is for RFC 4226/6238 codes, and an
# operator should see that a recovery code was used up.
RECOVERY_CODE = "rec"
PASSKEY = "hwk"  # proof of possession of a hardware-secured key
USER_PRESENCE_VERIFIED = "user"  # the authenticator verified the user (PIN, biometrics)
MULTI_FACTOR = "mfa"
# Not in RFC 8176's registry either: signed in through an external provider (OpenID
# Connect, GitHub), whose own methods are unknown unless it says and is trusted to.
FEDERATED = "fed"

# How pages name them, in the reader's language.
_LABELS = {
    PASSWORD: lazy("password"),
    OTP: lazy("authenticator code"),
    RECOVERY_CODE: lazy("recovery code"),
    PASSKEY: lazy("passkey"),
    FEDERATED: lazy("external provider"),
}


def with_mfa(methods: Iterable[str]) -> tuple[str, ...]:
    """``methods`` plus ``mfa`` when they hold more than one factor (RFC 8176 section 2)."""
    found = tuple(dict.fromkeys(methods))
    factors = {m for m in found if m in _LABELS}
    if len(factors) > 1 and MULTI_FACTOR not in found:
        found = (*found, MULTI_FACTOR)
    return found


def describe_methods(methods: Iterable[str]) -> str:
    """``("pwd", "otp", "mfa")`` as "password + authenticator code" (in the current
    language); "" for none."""
    return " + ".join(str(_LABELS[m]) for m in dict.fromkeys(methods) if m in _LABELS)
