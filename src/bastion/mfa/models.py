"""Tables of the second factors: TOTP secrets, recovery codes and passkeys.

Each belongs to one user and goes with it (``ON DELETE CASCADE``). Secrets are stored
encrypted (TOTP) or hashed (recovery codes); a passkey's public key is not a secret.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bastion.users.models import Base, UTCDateTime

TOTP_SECRET_MAX_LENGTH = 512  # the encrypted secret, base64url
CODE_HASH_LENGTH = 64  # HMAC-SHA-256, hex
# WebAuthn allows credential ids up to 1023 bytes: 1364 characters of base64url.
CREDENTIAL_ID_MAX_LENGTH = 1400
PASSKEY_NAME_MAX_LENGTH = 100
TRANSPORTS_MAX_LENGTH = 200
AAGUID_LENGTH = 36


class TOTPFactor(Base):
    """A user's authenticator-app secret. ``confirmed_at`` is None while enrolment waits
    for a first correct code; ``last_used_step`` is the newest time step accepted, so a
    code is never accepted twice (updated with a conditional UPDATE: one winner)."""

    __tablename__ = "bastion_totp"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[str] = mapped_column(String(TOTP_SECRET_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """One single-use recovery code, kept as a keyed hash."""

    __tablename__ = "bastion_recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(CODE_HASH_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Passkey(Base):
    """A WebAuthn credential (a passkey) registered by a user, with the name they gave it."""

    __tablename__ = "bastion_passkeys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="CASCADE"), index=True
    )
    credential_id: Mapped[str] = mapped_column(
        String(CREDENTIAL_ID_MAX_LENGTH), unique=True, index=True
    )
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(PASSKEY_NAME_MAX_LENGTH))
    transports: Mapped[str | None] = mapped_column(String(TRANSPORTS_MAX_LENGTH))
    aaguid: Mapped[str | None] = mapped_column(String(AAGUID_LENGTH))
    backup_eligible: Mapped[bool] = mapped_column(Boolean)
    backed_up: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
