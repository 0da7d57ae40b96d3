"""Re-authentication ("sudo mode"): whether a session may take a sensitive action now.

A sensitive action (password, address and factor changes, signing out everywhere, admin
actions) is allowed within ``BASTION_REAUTH_WINDOW`` seconds of the session's
``auth_time``: its sign-in, or its last re-authentication
(:meth:`bastion.sessions.SessionManager.reauthenticated`). Later, the user proves who they
are again first. A stolen session cookie is then worth little for those actions once its
owner has not signed in for a while.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bastion.clock import Clock, system_clock
from bastion.sessions import Session


@dataclass(frozen=True, slots=True)
class ReauthWindow:
    """The re-authentication window of ``seconds`` (``BASTION_REAUTH_WINDOW``), on
    ``clock`` (the services' clock, so that tests move time without sleeping)."""

    seconds: int
    clock: Clock = system_clock

    def age(self, session: Session) -> float:
        """Seconds since the session's last sign-in or re-authentication."""
        return self.clock() - session.auth_time

    def is_open(self, session: Session) -> bool:
        """Whether ``session`` may take a sensitive action now. An ``auth_time`` slightly
        ahead of this clock (another process's clock) counts as just now."""
        return self.age(session) < self.seconds

    def remaining(self, session: Session) -> int:
        """Whole seconds left in the window: 0 once it has closed, at most ``seconds``."""
        return min(self.seconds, max(0, math.ceil(self.seconds - self.age(session))))
