"""A user's second factors, as the pages, the sign-in and the CLI use them.

:class:`SecondFactors` checks codes and changes factors; each change it makes is recorded
on the audit trail here (``mfa.totp.enabled``, ``mfa.totp.disabled``,
``mfa.recovery_codes.regenerated``, ``mfa.recovery_code.used``, ``mfa.reset``), with the
request's ``ip``/``user_agent``/``session_ref`` when the caller passes them. Wrong codes
are not recorded or throttled here: callers go through the account's back-off
(:class:`bastion.auth.Authenticator`), which records failures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from bastion.accounts import Accounts
from bastion.clock import Clock, system_clock
from bastion.exceptions import BastionError, UserError
from bastion.i18n import lazy
from bastion.mfa import recovery_codes, totp
from bastion.mfa.repository import SecondFactorRepository
from bastion.mfa.secretbox import SecretBox, SecretBoxError
from bastion.mfa.totp import TOTPEnrolment

__all__ = [
    "FactorSummary",
    "InvalidCode",
    "RemovedFactors",
    "SecondFactors",
    "TOTPAlreadyEnabled",
]

# The purpose label of the TOTP secrets' encryption key.
TOTP_PURPOSE = "mfa.totp"


class InvalidCode(BastionError):
    """The code given is not a valid code (wrong, expired, already used)."""

    def __init__(self) -> None:
        super().__init__(
            lazy("That code is not valid. Check the time on your device and try again.")
        )


class TOTPAlreadyEnabled(UserError):
    def __init__(self) -> None:
        super().__init__(lazy("An authenticator app is already set up. Turn it off first."))


@dataclass(frozen=True, slots=True)
class FactorSummary:
    totp: bool
    passkeys: int
    recovery_codes_left: int
    # When a recovery code of the current set was last used (None: never).
    recovery_code_used_at: datetime | None = None

    @property
    def has_any(self) -> bool:
        return self.totp or self.passkeys > 0


@dataclass(frozen=True, slots=True)
class RemovedFactors:
    """What :meth:`SecondFactors.remove_all` removed."""

    totp: bool
    passkeys: int
    recovery_codes: int
    sessions_ended: int

    def describe(self) -> str:
        """ "TOTP, 2 passkeys, 10 recovery codes" or "no second factors"."""
        parts = ["TOTP"] if self.totp else []
        for count, word in ((self.passkeys, "passkey"), (self.recovery_codes, "recovery code")):
            if count:
                parts.append(f"{count} {word}{'s' if count != 1 else ''}")
        return ", ".join(parts) or "no second factors"


class SecondFactors:
    def __init__(
        self,
        repository: SecondFactorRepository,
        accounts: Accounts,
        *,
        secret: bytes,
        fallbacks: list[bytes] | tuple[bytes, ...] = (),
        issuer: str,
        clock: Clock = system_clock,
    ) -> None:
        self.repository = repository
        self.accounts = accounts
        self.audit = accounts.audit
        self.box = SecretBox(secret, fallbacks, purpose=TOTP_PURPOSE)
        self.hasher = recovery_codes.RecoveryCodeHasher(secret, fallbacks)
        self.issuer = issuer
        self.clock = clock

    async def summary(self, user_id: int) -> FactorSummary:
        totp_on, passkeys, _ = await self.repository.factor_counts(user_id)
        codes = await self.repository.recovery_code_status(user_id)
        return FactorSummary(
            totp=totp_on,
            passkeys=passkeys,
            recovery_codes_left=codes.left,
            recovery_code_used_at=codes.last_used_at,
        )

    # -- TOTP ------------------------------------------------------------------------------

    async def begin_totp(self, user_id: int, account_name: str) -> TOTPEnrolment:
        """A new secret for the user to scan; it waits, off, for :meth:`confirm_totp`.

        Calling again (a reloaded page) replaces a pending secret. While TOTP is on,
        raises :class:`TOTPAlreadyEnabled`.
        """
        existing = await self.repository.get_totp(user_id)
        if existing is not None and existing.confirmed:
            raise TOTPAlreadyEnabled
        secret = totp.new_secret()
        sealed = self.box.seal(secret.encode("ascii"), context=str(user_id))
        if not await self.repository.start_totp(user_id, sealed):
            raise TOTPAlreadyEnabled
        return totp.enrolment(secret, account_name, self.issuer)

    async def pending_totp(self, user_id: int, account_name: str) -> TOTPEnrolment | None:
        """The pending enrolment (to show its QR code again after a wrong code), or None."""
        existing = await self.repository.get_totp(user_id)
        if existing is None or existing.confirmed:
            return None
        secret = self._open(existing.secret, user_id)
        return None if secret is None else totp.enrolment(secret, account_name, self.issuer)

    async def confirm_totp(self, user_id: int, code: str, **context: Any) -> list[str]:
        """Turn the pending TOTP on with a correct code; returns 10 new recovery codes
        (every older one dies). :class:`InvalidCode` for a wrong code or nothing pending."""
        existing = await self.repository.get_totp(user_id)
        if existing is None or existing.confirmed:
            raise InvalidCode
        secret = self._open(existing.secret, user_id)
        step = None if secret is None else totp.matching_step(secret, code, self.clock)
        if step is None:
            raise InvalidCode
        codes = recovery_codes.generate()
        hashes = [self.hasher.hash(c) for c in codes]
        if not await self.repository.confirm_totp(user_id, existing.secret, step, hashes):
            raise InvalidCode
        await self._record("mfa.totp.enabled", user_id, context)
        return codes

    async def verify_totp(self, user_id: int, code: str) -> bool:
        """Whether ``code`` is the user's current code (one step either side) and its step
        is newer than any used before; the step is then used up, atomically."""
        existing = await self.repository.get_totp(user_id)
        if existing is None or not existing.confirmed:
            return False
        opened = self._open_sealed(existing.secret, user_id)
        if opened is None:
            return False
        secret, stale = opened
        step = totp.matching_step(secret, code, self.clock)
        if step is None or not await self.repository.claim_step(user_id, step):
            return False
        if stale:
            new = self.box.seal(secret.encode("ascii"), context=str(user_id))
            await self.repository.reseal_totp(user_id, existing.secret, new)
        return True

    async def disable_totp(self, user_id: int, **context: Any) -> bool:
        """Turn TOTP off; its recovery codes go too unless the user has a passkey. True
        when it was on."""
        was_on = await self.repository.delete_totp(user_id)
        if was_on:
            await self._record("mfa.totp.disabled", user_id, context)
        return was_on

    # -- recovery codes --------------------------------------------------------------------

    async def use_recovery_code(self, user_id: int, code: str, **context: Any) -> bool:
        """Spend one of the user's recovery codes (each works once, atomically)."""
        used = await self.repository.use_recovery_code(user_id, self.hasher.candidates(code))
        if used:
            left = (await self.repository.recovery_code_status(user_id)).left
            await self._record("mfa.recovery_code.used", user_id, context, {"left": left})
        return used

    async def regenerate_recovery_codes(self, user_id: int, **context: Any) -> list[str]:
        """10 new codes; every older one dies."""
        codes = recovery_codes.generate()
        await self.repository.replace_recovery_codes(user_id, [self.hasher.hash(c) for c in codes])
        await self._record("mfa.recovery_codes.regenerated", user_id, context)
        return codes

    # -- everything ------------------------------------------------------------------------

    async def remove_all(
        self, user_id: int, *, by: str, actor_id: int | None = None, **context: Any
    ) -> RemovedFactors:
        """Remove every second factor of the user (a lost phone and lost codes: an
        operator's decision, ``by`` "cli" or "admin") and end all their sessions.
        ``UserError`` for no such user."""
        user = await self.accounts.require(user_id)
        totp_on, passkeys, codes = await self.repository.delete_all(user_id)
        ended = await self.accounts.sessions.end_all_for_user(user_id)
        for callback in self.accounts.on_user_changed:
            await callback(user_id)
        removed = RemovedFactors(totp_on, passkeys, codes, len(ended))
        await self.audit.record(
            "mfa.reset",
            user_id=user_id,
            username=user.username,
            actor_id=actor_id,
            detail={"by": by, **asdict(removed)},
            **context,
        )
        return removed

    # -- helpers ---------------------------------------------------------------------------

    def _open_sealed(self, sealed: str, user_id: int) -> tuple[str, bool] | None:
        try:
            opened = self.box.open(sealed, context=str(user_id))
        except SecretBoxError:
            # A secret no current or fallback key opens (a fallback dropped too early):
            # the factor cannot work; an operator resets it (bastion users reset-mfa).
            return None
        return opened.value.decode("ascii"), opened.stale

    def _open(self, sealed: str, user_id: int) -> str | None:
        opened = self._open_sealed(sealed, user_id)
        return None if opened is None else opened[0]

    async def _record(
        self,
        event: str,
        user_id: int,
        context: dict[str, Any],
        detail: dict[str, Any] | None = None,
    ) -> None:
        user = await self.accounts.users.get_by_id(user_id)
        await self.audit.record(
            event,
            user_id=user_id,
            username=user.username if user is not None else None,
            detail=detail,
            **context,
        )
