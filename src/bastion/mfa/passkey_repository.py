"""Queries on passkeys (``bastion_passkeys``) and users' WebAuthn user handles.

Like :class:`bastion.users.repository.UserRepository`, on its engine, clock and timeout:
every method is one short transaction, returns frozen dataclasses, and an outage raises
:class:`bastion.exceptions.StoreUnavailable` ("database").
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.clock import to_datetime
from bastion.mfa.models import Passkey
from bastion.users.models import User
from bastion.users.repository import UserRepository, guarded


class CredentialTaken(Exception):
    """The credential id is registered already (to this user or another)."""


@dataclass(frozen=True, slots=True)
class PasskeyRecord:
    id: int
    user_id: int
    credential_id: str  # base64url, as WebAuthn's JSON forms carry it
    public_key: bytes = field(repr=False)
    sign_count: int
    name: str
    transports: tuple[str, ...]
    aaguid: str | None
    backup_eligible: bool
    backed_up: bool
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewPasskey:
    user_id: int
    credential_id: str
    public_key: bytes = field(repr=False)
    sign_count: int
    name: str
    transports: tuple[str, ...]
    aaguid: str | None
    backup_eligible: bool
    backed_up: bool


def _record(row: Any) -> PasskeyRecord:
    transports = tuple(json.loads(row.transports)) if row.transports else ()
    return PasskeyRecord(
        id=row.id,
        user_id=row.user_id,
        credential_id=row.credential_id,
        public_key=bytes(row.public_key),
        sign_count=row.sign_count,
        name=row.name,
        transports=transports,
        aaguid=row.aaguid,
        backup_eligible=row.backup_eligible,
        backed_up=row.backed_up,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


class PasskeyRepository:
    def __init__(self, users: UserRepository) -> None:
        self.users = users

    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return guarded(self.users.engine.begin(), self.users.timeout)

    def _now(self) -> datetime:
        return to_datetime(self.users.clock())

    async def user_handle(self, user_id: int) -> str | None:
        async with self._connection() as connection:
            return await connection.scalar(
                select(User.webauthn_user_handle).where(User.id == user_id)
            )

    async def ensure_user_handle(self, user_id: int, candidate: str) -> str | None:
        """The user's handle, set to ``candidate`` if they had none (one conditional
        UPDATE: two first registrations at once agree on one handle). None: no such user."""
        async with self._connection() as connection:
            await connection.execute(
                update(User)
                .where(User.id == user_id, User.webauthn_user_handle.is_(None))
                .values(webauthn_user_handle=candidate)
            )
            return await connection.scalar(
                select(User.webauthn_user_handle).where(User.id == user_id)
            )

    async def list_for_user(self, user_id: int) -> list[PasskeyRecord]:
        query = select(Passkey.__table__).where(Passkey.user_id == user_id).order_by(Passkey.id)
        async with self._connection() as connection:
            return [_record(row) for row in (await connection.execute(query)).all()]

    async def count_for_user(self, user_id: int) -> int:
        query = select(func.count()).select_from(Passkey).where(Passkey.user_id == user_id)
        async with self._connection() as connection:
            return int(await connection.scalar(query) or 0)

    async def by_credential_id(self, credential_id: str) -> PasskeyRecord | None:
        query = select(Passkey.__table__).where(Passkey.credential_id == credential_id)
        async with self._connection() as connection:
            row = (await connection.execute(query)).first()
        return _record(row) if row is not None else None

    async def add(self, passkey: NewPasskey) -> PasskeyRecord:
        """Insert; :class:`CredentialTaken` when the credential id is registered already."""
        now = self._now()
        values = {
            "user_id": passkey.user_id,
            "credential_id": passkey.credential_id,
            "public_key": passkey.public_key,
            "sign_count": passkey.sign_count,
            "name": passkey.name,
            "transports": json.dumps(list(passkey.transports)) if passkey.transports else None,
            "aaguid": passkey.aaguid,
            "backup_eligible": passkey.backup_eligible,
            "backed_up": passkey.backed_up,
            "created_at": now,
            "last_used_at": None,
        }
        try:
            async with self._connection() as connection:
                result = await connection.execute(
                    insert(Passkey).values(values).returning(Passkey.id)
                )
                new_id = result.scalar_one()
        except sa_exc.IntegrityError:
            raise CredentialTaken from None
        return PasskeyRecord(
            id=new_id,
            user_id=passkey.user_id,
            credential_id=passkey.credential_id,
            public_key=passkey.public_key,
            sign_count=passkey.sign_count,
            name=passkey.name,
            transports=passkey.transports,
            aaguid=passkey.aaguid,
            backup_eligible=passkey.backup_eligible,
            backed_up=passkey.backed_up,
            created_at=now,
            last_used_at=None,
        )

    async def record_use(self, passkey: PasskeyRecord, *, sign_count: int, backed_up: bool) -> bool:
        """Store the new sign count, if the stored one is still what ``passkey`` says
        (conditional UPDATE): False when another use got there first."""
        statement = (
            update(Passkey)
            .where(Passkey.id == passkey.id, Passkey.sign_count == passkey.sign_count)
            .values(sign_count=sign_count, backed_up=backed_up, last_used_at=self._now())
        )
        async with self._connection() as connection:
            result = await connection.execute(statement)
        return int(getattr(result, "rowcount", 0)) == 1

    async def rename(self, user_id: int, passkey_id: int, name: str) -> bool:
        statement = (
            update(Passkey)
            .where(Passkey.id == passkey_id, Passkey.user_id == user_id)
            .values(name=name)
        )
        async with self._connection() as connection:
            result = await connection.execute(statement)
        return int(getattr(result, "rowcount", 0)) == 1

    async def remove(self, user_id: int, passkey_id: int) -> PasskeyRecord | None:
        """Delete one of the user's passkeys; the deleted one, or None if it was not theirs."""
        query = select(Passkey.__table__).where(
            Passkey.id == passkey_id, Passkey.user_id == user_id
        )
        async with self._connection() as connection:
            row = (await connection.execute(query)).first()
            if row is None:
                return None
            await connection.execute(delete(Passkey).where(Passkey.id == passkey_id))
        return _record(row)

    async def remove_all(self, user_id: int) -> int:
        async with self._connection() as connection:
            result = await connection.execute(delete(Passkey).where(Passkey.user_id == user_id))
        return int(getattr(result, "rowcount", 0))
