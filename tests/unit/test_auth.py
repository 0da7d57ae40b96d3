"""The authenticator shared by /login and /api/token."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.audit import AuditTrail
from bastion.auth import Authenticator
from bastion.clock import FakeClock
from bastion.db import create_engine
from bastion.exceptions import StoreUnavailable
from bastion.passwords import Passwords
from bastion.ratelimit import LoginThrottle
from bastion.stores.memory import MemoryStore
from bastion.users.repository import UserRepository


async def test_an_attempt_during_a_database_outage_is_not_counted_as_a_failure(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'users.db'}")
    users = UserRepository(engine)
    throttle = LoginThrottle(MemoryStore(clock=FakeClock()), max_failures=2, max_backoff=60)
    authenticator = Authenticator(users, Passwords(), AuditTrail(users), limiter=throttle)
    for _ in range(5):
        with pytest.raises(StoreUnavailable):
            await authenticator.authenticate(
                "alice", "whatever-password", ip="198.51.100.1", user_agent=None, channel="web"
            )
    # Five outage attempts later the account is neither counted nor in back-off.
    assert await throttle.failures("alice") == 0
    await engine.dispose()
