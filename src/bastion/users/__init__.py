"""Users, roles and the audit log: SQLAlchemy models and an async repository."""

from __future__ import annotations

from bastion.users.models import (
    AuditEvent,
    Role,
    User,
    UserRole,
    normalize_email,
    normalize_role,
    normalize_username,
)
from bastion.users.repository import AuditRecord, UserRecord, UserRepository

__all__ = [
    "AuditEvent",
    "AuditRecord",
    "Role",
    "User",
    "UserRecord",
    "UserRepository",
    "UserRole",
    "normalize_email",
    "normalize_role",
    "normalize_username",
]
