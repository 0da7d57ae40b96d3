"""Queries on the second-factor tables: TOTP secrets and recovery codes (and, for the
summary and a reset, the number of passkeys and their removal).

Like :class:`bastion.users.repository.UserRepository`: each method is one short
transaction bounded by ``timeout``, returns plain values, and a database that does not
answer raises :class:`StoreUnavailable`. Every "use" is one conditional UPDATE whose row
count decides, so of two requests racing with one code exactly one wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bastion.clock import Clock, system_clock, to_datetime
from bastion.exceptions import UserError
from bastion.mfa.models import Passkey, RecoveryCode, TOTPFactor
from bastion.users.repository import UNKNOWN_USER, guarded

__all__ = ["RecoveryCodeStatus", "SecondFactorRepository", "TOTPRecord"]


@dataclass(frozen=True, slots=True)
class TOTPRecord:
    user_id: int
    secret: str = field(repr=False)  # sealed (bastion.mfa.secretbox)
    created_at: datetime
    confirmed_at: datetime | None
    last_used_step: int | None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None


@dataclass(frozen=True, slots=True)
class RecoveryCodeStatus:
    left: int
    last_used_at: datetime | None  # of the current set


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))


class SecondFactorRepository:
    def __init__(
        self, engine: AsyncEngine, *, clock: Clock = system_clock, timeout: float = 2.0
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.timeout = timeout

    def _now(self) -> datetime:
        return to_datetime(self.clock())

    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return guarded(self.engine.begin(), self.timeout)

    # -- TOTP ------------------------------------------------------------------------------

    async def get_totp(self, user_id: int) -> TOTPRecord | None:
        async with self._connection() as connection:
            row = (
                await connection.execute(select(TOTPFactor).where(TOTPFactor.user_id == user_id))
            ).first()
        if row is None:
            return None
        return TOTPRecord(
            user_id=row.user_id,
            secret=row.secret,
            created_at=row.created_at,
            confirmed_at=row.confirmed_at,
            last_used_step=row.last_used_step,
        )

    async def start_totp(self, user_id: int, sealed_secret: str) -> bool:
        """Store a new, unconfirmed secret in place of an unconfirmed one. False (nothing
        changed) when the user has confirmed TOTP already; ``UserError`` for no such user."""
        for _ in range(3):
            try:
                async with self._connection() as connection:
                    await connection.execute(
                        delete(TOTPFactor).where(
                            TOTPFactor.user_id == user_id, TOTPFactor.confirmed_at.is_(None)
                        )
                    )
                    await connection.execute(
                        insert(TOTPFactor).values(
                            user_id=user_id,
                            secret=sealed_secret,
                            created_at=self._now(),
                            confirmed_at=None,
                            last_used_step=None,
                        )
                    )
                return True
            except sa_exc.IntegrityError:
                # The primary key (a confirmed factor, or a concurrent enrolment's row) or
                # the foreign key (no such user): look which.
                existing = await self.get_totp(user_id)
                if existing is None:
                    raise UserError(UNKNOWN_USER) from None
                if existing.confirmed:
                    return False
        return False

    async def confirm_totp(
        self, user_id: int, sealed_secret: str, step: int, code_hashes: Sequence[str]
    ) -> bool:
        """Turn on the pending secret ``sealed_secret`` (the one the code was checked
        against, not one a later enrolment put in its place), mark ``step`` used and
        replace the recovery codes, in one transaction. False when it was not pending."""
        async with self._connection() as connection:
            result = await connection.execute(
                update(TOTPFactor)
                .where(
                    TOTPFactor.user_id == user_id,
                    TOTPFactor.secret == sealed_secret,
                    TOTPFactor.confirmed_at.is_(None),
                )
                .values(confirmed_at=self._now(), last_used_step=step)
            )
            if _rowcount(result) != 1:
                return False
            await self._replace_codes(connection, user_id, code_hashes)
        return True

    async def claim_step(self, user_id: int, step: int) -> bool:
        """Record ``step`` as the newest used, if it is newer than the last one: one
        conditional UPDATE, so two requests with one code cannot both succeed."""
        async with self._connection() as connection:
            result = await connection.execute(
                update(TOTPFactor)
                .where(
                    TOTPFactor.user_id == user_id,
                    TOTPFactor.confirmed_at.is_not(None),
                    or_(TOTPFactor.last_used_step.is_(None), TOTPFactor.last_used_step < step),
                )
                .values(last_used_step=step)
            )
            return _rowcount(result) == 1

    async def reseal_totp(self, user_id: int, old: str, new: str) -> None:
        """Replace a secret sealed under a fallback key (if still the same one)."""
        async with self._connection() as connection:
            await connection.execute(
                update(TOTPFactor)
                .where(TOTPFactor.user_id == user_id, TOTPFactor.secret == old)
                .values(secret=new)
            )

    async def delete_totp(self, user_id: int) -> bool:
        """Remove the user's TOTP (confirmed or pending); their recovery codes too, unless
        a passkey remains for them to stand in for. True when TOTP was on."""
        async with self._connection() as connection:
            removed = await connection.execute(
                delete(TOTPFactor).where(
                    TOTPFactor.user_id == user_id, TOTPFactor.confirmed_at.is_not(None)
                )
            )
            await connection.execute(delete(TOTPFactor).where(TOTPFactor.user_id == user_id))
            passkeys = await connection.scalar(
                select(func.count()).select_from(Passkey).where(Passkey.user_id == user_id)
            )
            if not passkeys:
                await connection.execute(
                    delete(RecoveryCode).where(RecoveryCode.user_id == user_id)
                )
        return _rowcount(removed) == 1

    # -- recovery codes --------------------------------------------------------------------

    async def replace_recovery_codes(self, user_id: int, code_hashes: Sequence[str]) -> None:
        """The user's codes become exactly ``code_hashes``; every earlier code dies."""
        async with self._connection() as connection:
            await self._replace_codes(connection, user_id, code_hashes)

    async def _replace_codes(
        self, connection: AsyncConnection, user_id: int, code_hashes: Sequence[str]
    ) -> None:
        await connection.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        now = self._now()
        try:
            await connection.execute(
                insert(RecoveryCode),
                [
                    {"user_id": user_id, "code_hash": h, "created_at": now, "used_at": None}
                    for h in code_hashes
                ],
            )
        except sa_exc.IntegrityError:
            raise UserError(UNKNOWN_USER) from None

    async def use_recovery_code(self, user_id: int, code_hashes: Sequence[str]) -> bool:
        """Spend the unused code stored under one of ``code_hashes`` (its forms under the
        current and fallback keys): one conditional UPDATE, so a code is used once."""
        if not code_hashes:
            return False
        async with self._connection() as connection:
            result = await connection.execute(
                update(RecoveryCode)
                .where(
                    RecoveryCode.user_id == user_id,
                    RecoveryCode.code_hash.in_(list(code_hashes)),
                    RecoveryCode.used_at.is_(None),
                )
                .values(used_at=self._now())
            )
            return _rowcount(result) >= 1

    async def recovery_code_status(self, user_id: int) -> RecoveryCodeStatus:
        async with self._connection() as connection:
            row = (
                await connection.execute(
                    select(
                        func.count(RecoveryCode.id).filter(RecoveryCode.used_at.is_(None)),
                        func.max(RecoveryCode.used_at),
                    ).where(RecoveryCode.user_id == user_id)
                )
            ).one()
        return RecoveryCodeStatus(left=int(row[0] or 0), last_used_at=row[1])

    # -- all factors -----------------------------------------------------------------------

    async def factor_counts(self, user_id: int) -> tuple[bool, int, int]:
        """(TOTP on, passkeys, unused recovery codes), in one round trip."""
        totp = (
            select(func.count())
            .select_from(TOTPFactor)
            .where(TOTPFactor.user_id == user_id, TOTPFactor.confirmed_at.is_not(None))
            .scalar_subquery()
        )
        passkeys = (
            select(func.count())
            .select_from(Passkey)
            .where(Passkey.user_id == user_id)
            .scalar_subquery()
        )
        codes = (
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
            .scalar_subquery()
        )
        async with self._connection() as connection:
            row = (await connection.execute(select(totp, passkeys, codes))).one()
        return bool(row[0]), int(row[1]), int(row[2])

    async def delete_all(self, user_id: int) -> tuple[bool, int, int]:
        """Remove every second factor of the user (TOTP, recovery codes, passkeys) in one
        transaction; returns what there was, as :meth:`factor_counts`."""
        async with self._connection() as connection:
            totp = await connection.execute(
                delete(TOTPFactor).where(
                    TOTPFactor.user_id == user_id, TOTPFactor.confirmed_at.is_not(None)
                )
            )
            await connection.execute(delete(TOTPFactor).where(TOTPFactor.user_id == user_id))
            codes = await connection.execute(
                delete(RecoveryCode).where(RecoveryCode.user_id == user_id)
            )
            passkeys = await connection.execute(delete(Passkey).where(Passkey.user_id == user_id))
        return _rowcount(totp) == 1, _rowcount(passkeys), _rowcount(codes)
