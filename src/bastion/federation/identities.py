"""Queries on ``bastion_external_identities``: which user an issuer + subject belongs to.

Like :class:`bastion.users.repository.UserRepository`, on its engine, clock and timeout:
each method is one short transaction, returns frozen dataclasses, and an outage raises
:class:`bastion.exceptions.StoreUnavailable` ("database").
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.clock import to_datetime
from bastion.federation.models import ExternalIdentity
from bastion.users.models import EMAIL_MAX_LENGTH
from bastion.users.repository import UserRepository, guarded


class IdentityExists(Exception):
    """The issuer + subject is linked already (to this user or another)."""


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    id: int
    user_id: int
    provider: str
    issuer: str
    subject: str
    email: str | None
    created_at: datetime
    last_used_at: datetime | None


def _record(row: Any) -> IdentityRecord:
    return IdentityRecord(
        id=row.id,
        user_id=row.user_id,
        provider=row.provider,
        issuer=row.issuer,
        subject=row.subject,
        email=row.email,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


def _email(email: str | None) -> str | None:
    return email[:EMAIL_MAX_LENGTH] if email else None


class IdentityRepository:
    def __init__(self, users: UserRepository) -> None:
        self.users = users

    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return guarded(self.users.engine.begin(), self.users.timeout)

    def _now(self) -> datetime:
        return to_datetime(self.users.clock())

    async def find(self, issuer: str, subject: str) -> IdentityRecord | None:
        statement = select(ExternalIdentity.__table__).where(
            ExternalIdentity.issuer == issuer, ExternalIdentity.subject == subject
        )
        async with self._connection() as connection:
            row = (await connection.execute(statement)).first()
        return _record(row) if row is not None else None

    async def of_user(self, user_id: int) -> list[IdentityRecord]:
        statement = (
            select(ExternalIdentity.__table__)
            .where(ExternalIdentity.user_id == user_id)
            .order_by(ExternalIdentity.id)
        )
        async with self._connection() as connection:
            return [_record(row) for row in await connection.execute(statement)]

    async def add(
        self, user_id: int, provider: str, issuer: str, subject: str, email: str | None
    ) -> IdentityRecord:
        """Link; :class:`IdentityExists` when the issuer + subject is linked already (the
        unique index decides, so two concurrent first sign-ins cannot both link it)."""
        now = self._now()
        values = {
            "user_id": user_id,
            "provider": provider,
            "issuer": issuer,
            "subject": subject,
            "email": _email(email),
            "created_at": now,
            "last_used_at": now,
        }
        try:
            async with self._connection() as connection:
                result = await connection.execute(
                    insert(ExternalIdentity).returning(ExternalIdentity.id), values
                )
                identity_id = result.scalar_one()
        except sa_exc.IntegrityError:
            raise IdentityExists from None
        return IdentityRecord(id=identity_id, **values)  # type: ignore[arg-type]

    async def record_use(self, identity_id: int, email: str | None) -> None:
        statement = (
            update(ExternalIdentity)
            .where(ExternalIdentity.id == identity_id)
            .values(last_used_at=self._now(), email=_email(email))
        )
        async with self._connection() as connection:
            await connection.execute(statement)

    async def remove(self, user_id: int, identity_id: int) -> bool:
        statement = delete(ExternalIdentity).where(
            ExternalIdentity.id == identity_id, ExternalIdentity.user_id == user_id
        )
        async with self._connection() as connection:
            result = await connection.execute(statement)
        return bool(getattr(result, "rowcount", 0))
