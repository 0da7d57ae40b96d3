"""Security events: stored in the audit table and logged on ``bastion.security``."""

from __future__ import annotations

import logging
from typing import Any

from bastion.exceptions import StoreUnavailable
from bastion.text import clean_text
from bastion.users.repository import UserRepository

log = logging.getLogger("bastion.security")


class AuditTrail:
    """Records events such as ``login.success`` or ``session.revoked``. Never pass a
    password, token or raw session id: use a session's ``ref``."""

    def __init__(self, users: UserRepository) -> None:
        self.users = users

    async def record(
        self,
        event: str,
        *,
        user_id: int | None = None,
        username: str | None = None,
        actor_id: int | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        session_ref: str | None = None,
        detail: dict[str, Any] | None = None,
        required: bool = False,
    ) -> None:
        """Log and store one event. A database outage loses the stored copy (the log line
        remains) unless ``required``, in which case it propagates.

        Values may come straight from a request (a user name as typed, a user agent): both
        copies hold them cleaned by :func:`bastion.text.clean_text`, so a control character
        can neither fail the insert (PostgreSQL refuses NUL) nor forge a log line."""
        fields = {
            "event": event,
            "user_id": user_id,
            "username": username,
            "actor_id": actor_id,
            "ip": ip,
            "session_ref": session_ref,
            **(detail or {}),
        }
        logged = {k: clean_text(v) if isinstance(v, str) else v for k, v in fields.items()}
        log.info(event, extra={"security": {k: v for k, v in logged.items() if v is not None}})
        try:
            await self.users.add_audit(
                event,
                user_id=user_id,
                username=username,
                actor_id=actor_id,
                ip=ip,
                user_agent=user_agent,
                session_ref=session_ref,
                detail=detail,
            )
        except StoreUnavailable:
            log.error("audit event %s not stored: database unavailable", event)
            if required:
                raise
