"""SQLAlchemy models of users, roles and the audit log, and the name normalisers.

The tables live in :data:`bastion.db.metadata`, next to the SQL store's tables, so one
migration history (``bastion/migrations``) covers them all. Every name starts with
``bastion_``, so they share a database with an application's own tables.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bastion.confusables import has_invisible, mixes_scripts, skeleton_digest
from bastion.db import metadata
from bastion.exceptions import UserError
from bastion.i18n import lazy

USERNAME_MAX_LENGTH = 150
EMAIL_MAX_LENGTH = 254  # RFC 5321 path limit
ROLE_MAX_LENGTH = 64
ROLE_DESCRIPTION_MAX_LENGTH = 200
USER_AGENT_MAX_LENGTH = 512
SESSION_REF_MAX_LENGTH = 64
IP_MAX_LENGTH = 64
EVENT_MAX_LENGTH = 64
AUDIT_USERNAME_MAX_LENGTH = 255
SKELETON_DIGEST_LENGTH = 64  # SHA-256, hex
LANGUAGE_MAX_LENGTH = 16
USER_HANDLE_MAX_LENGTH = 86  # 64 random bytes, base64url


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that only accepts and always returns aware UTC datetimes.

    SQLite has no time zones: values are stored as UTC and come back naive, so they are
    marked UTC on the way out. PostgreSQL's ``timestamptz`` already returns aware values.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            # A naive datetime is ambiguous; guessing would silently shift timestamps.
            raise ValueError("naive datetime; pass an aware (UTC) datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# 64-bit ids for the ever-growing audit log; SQLite only auto-increments "INTEGER".
AuditId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = metadata


class User(Base):
    __tablename__ = "bastion_users"
    # SQLite AUTOINCREMENT: never hand a deleted user's id to a new user, since sessions,
    # tokens and audit rows refer to users by id. PostgreSQL sequences never reuse ids.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    username_key: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), unique=True, index=True)
    # Digest of the UTS #39 skeleton of username_key: unique, so no two accounts look alike.
    # NULL only for accounts that already looked like an older one when the column came
    # (migration 0003); the older account keeps the digest and so still blocks new look-alikes.
    username_skeleton: Mapped[str | None] = mapped_column(
        String(SKELETON_DIGEST_LENGTH), unique=True, index=True
    )
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    email_key: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(1024))
    is_active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # When the current address was proven by a link sent to it; None: not (yet) verified.
    # A change of address sets it, since the new address is only taken once confirmed.
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A BCP 47 tag Bastion speaks ("en", "zh-CN"), chosen by the user; NULL: not chosen.
    language: Mapped[str | None] = mapped_column(String(LANGUAGE_MAX_LENGTH))
    # The WebAuthn user handle: random, given to authenticators with the first passkey
    # (never the id or the name, which would tell who the credential belongs to).
    webauthn_user_handle: Mapped[str | None] = mapped_column(
        String(USER_HANDLE_MAX_LENGTH), unique=True, index=True
    )

    roles: Mapped[set[Role]] = relationship(
        secondary="bastion_user_roles", collection_class=set, passive_deletes=True
    )


class Role(Base):
    __tablename__ = "bastion_roles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(ROLE_MAX_LENGTH), unique=True, index=True)
    description: Mapped[str | None] = mapped_column(String(ROLE_DESCRIPTION_MAX_LENGTH))


class UserRole(Base):
    __tablename__ = "bastion_user_roles"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="CASCADE"), primary_key=True
    )
    # Indexed so deleting a role does not scan the whole table (the PK leads with user_id).
    role_id: Mapped[int] = mapped_column(
        ForeignKey("bastion_roles.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class AuditEvent(Base):
    __tablename__ = "bastion_audit_events"

    id: Mapped[int] = mapped_column(AuditId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    event: Mapped[str] = mapped_column(String(EVENT_MAX_LENGTH))
    # SET NULL: the trail outlives the account; `username` still says who it was.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="SET NULL"), index=True
    )
    username: Mapped[str | None] = mapped_column(String(AUDIT_USERNAME_MAX_LENGTH))
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="SET NULL"), index=True
    )
    ip: Mapped[str | None] = mapped_column(String(IP_MAX_LENGTH))
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
    # A hash or prefix that identifies a session in the log, never the session id itself.
    session_ref: Mapped[str | None] = mapped_column(String(SESSION_REF_MAX_LENGTH))
    detail: Mapped[str | None] = mapped_column(Text)  # JSON object


def fold(text: str) -> str:
    """The look-alike-insensitive form of ``text`` (no validation); used for searching."""
    # NFKC, casefold, NFKC again: the Unicode "NFKC_Casefold" recipe, so compatibility
    # forms (fullwidth letters, ligatures) and case variants all map to one key.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _has_control(text: str) -> bool:
    # Categories C*: controls, format characters (zero-width joiners...), surrogates,
    # private use and unassigned code points; none belongs in a name.
    return any(unicodedata.category(ch).startswith("C") for ch in text)


# Messages fit to show the user (whole sentences, translated when shown).
USERNAME_EMPTY = lazy("The user name is empty.")
USERNAME_TOO_LONG = lazy(
    "The user name is longer than %(max)d characters.", max=USERNAME_MAX_LENGTH
)
USERNAME_INVISIBLE = lazy("The user name contains invisible or control characters.")
ROLE_NAME_EMPTY = lazy("The role name is empty.")
ROLE_NAME_TOO_LONG = lazy("The role name is longer than %(max)d characters.", max=ROLE_MAX_LENGTH)


def _has_space(text: str) -> bool:
    return any(ch.isspace() or unicodedata.category(ch).startswith("Z") for ch in text)


def normalize_username(name: str) -> str:
    """The comparison key of a user name; look-alike spellings give the same key.

    Raises :class:`UserError` with a message fit to show the user.
    """
    display = name.strip()
    if not display:
        raise UserError(USERNAME_EMPTY, fields=("username",))
    if len(display) > USERNAME_MAX_LENGTH:
        raise UserError(USERNAME_TOO_LONG, fields=("username",))
    if _has_control(display):
        raise UserError(USERNAME_INVISIBLE, fields=("username",))
    key = fold(display)
    # Checked after folding too: NFKC turns e.g. U+3000 into an ordinary space.
    if _has_space(key):
        raise UserError(lazy("The user name must not contain spaces."), fields=("username",))
    if _has_control(key):
        raise UserError(USERNAME_INVISIBLE, fields=("username",))
    if len(key) > USERNAME_MAX_LENGTH:
        raise UserError(USERNAME_TOO_LONG, fields=("username",))
    return key


def username_skeleton(key: str) -> str:
    """The look-alike key of a user-name key (from :func:`normalize_username`): names that
    look alike ("admin", and "admin" spelled with a Cyrillic a or a dotless i) share it. A
    digest of the key's UTS #39 skeleton; see :mod:`bastion.confusables`."""
    return skeleton_digest(key)


def check_new_username(name: str) -> str:
    """The comparison key of the name of a *new* account, after the stricter rules new names
    follow: no invisible characters, and letters of one script (UTS #39 "Highly
    Restrictive"). Existing accounts keep signing in under :func:`normalize_username`.

    Raises :class:`UserError` with a message fit to show the user.
    """
    key = normalize_username(name)
    if has_invisible(name) or has_invisible(key):
        raise UserError(USERNAME_INVISIBLE, fields=("username",))
    if mixes_scripts(key):
        raise UserError(
            lazy("The user name mixes letters of different scripts (alphabets)."),
            fields=("username",),
        )
    return key


def normalize_email(email: str) -> str:
    """The comparison key of an e-mail address (NFKC, lower case).

    Only a light shape check is made: one ``@`` with text on both sides, no spaces.
    """
    text = email.strip()
    if not text:
        raise UserError(lazy("The e-mail address is empty."), fields=("email",))
    if _has_control(text):
        raise UserError(
            lazy("The e-mail address contains invisible or control characters."), fields=("email",)
        )
    key = unicodedata.normalize("NFKC", text).lower()
    local, at, domain = key.rpartition("@")
    if not at or not local or not domain or _has_space(key):
        raise UserError(lazy("The e-mail address is not valid."), fields=("email",))
    if len(key) > EMAIL_MAX_LENGTH or len(text) > EMAIL_MAX_LENGTH:
        raise UserError(
            lazy("The e-mail address is longer than %(max)d characters.", max=EMAIL_MAX_LENGTH),
            fields=("email",),
        )
    return key


def normalize_role(name: str) -> str:
    """A role name, stripped; roles compare exactly (``admin`` is not ``Admin``)."""
    role = name.strip()
    if not role:
        raise UserError(ROLE_NAME_EMPTY)
    if len(role) > ROLE_MAX_LENGTH:
        raise UserError(ROLE_NAME_TOO_LONG)
    if _has_control(role) or _has_space(role):
        raise UserError(lazy("The role name must not contain spaces or control characters."))
    return role


__all__: list[str] = [
    "AuditEvent",
    "Base",
    "Role",
    "UTCDateTime",
    "User",
    "UserRole",
    "check_new_username",
    "fold",
    "normalize_email",
    "normalize_role",
    "normalize_username",
    "username_skeleton",
]
