"""The table of external identities linked to users.

An identity is named by its issuer and its subject (OpenID Connect ``iss`` + ``sub``; for
GitHub, its fixed issuer and the numeric user id), never by an e-mail address: addresses
change hands, subjects do not. Each identity belongs to one user and goes with it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.users.models import EMAIL_MAX_LENGTH, Base, UTCDateTime

PROVIDER_NAME_MAX_LENGTH = 64
ISSUER_MAX_LENGTH = 255
SUBJECT_MAX_LENGTH = 255  # OpenID Connect: at most 255 ASCII characters


class ExternalIdentity(Base):
    """A provider's account linked to a Bastion user. ``provider`` is the configured name
    (``google``) shown on pages; ``issuer`` + ``subject`` is what identifies it."""

    __tablename__ = "bastion_external_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(PROVIDER_NAME_MAX_LENGTH))
    issuer: Mapped[str] = mapped_column(String(ISSUER_MAX_LENGTH))
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX_LENGTH))
    # What the provider said the address was at the last sign-in (shown, never trusted).
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
