"""Security events are stored and emitted as structured records on `bastion.security`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bastion.audit import AuditTrail
from bastion.db import create_engine
from bastion.migrate import upgrade
from bastion.users.repository import UserRepository


@pytest_asyncio.fixture
async def users(tmp_path: Path) -> AsyncIterator[UserRepository]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    await upgrade(url)
    engine = create_engine(url)
    yield UserRepository(engine)
    await engine.dispose()


async def test_event_is_stored_and_logged_with_structured_fields(
    users: UserRepository, caplog: pytest.LogCaptureFixture
) -> None:
    trail = AuditTrail(users)
    with caplog.at_level(logging.INFO, logger="bastion.security"):
        await trail.record(
            "login.failure", username="alice", ip="203.0.113.9", detail={"reason": "password"}
        )
    record = next(r for r in caplog.records if r.name == "bastion.security")
    fields = record.__dict__["security"]
    assert fields == {
        "event": "login.failure",
        "username": "alice",
        "ip": "203.0.113.9",
        "reason": "password",
    }
    stored = await users.list_audit(0, 10)
    assert [(e.event, e.username, e.ip) for e in stored] == [
        ("login.failure", "alice", "203.0.113.9")
    ]


async def test_database_outage_keeps_the_log_line_unless_required(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bastion.exceptions import StoreUnavailable

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}")
    trail = AuditTrail(UserRepository(engine))
    with caplog.at_level(logging.INFO, logger="bastion.security"):
        await trail.record("logout", user_id=1)
        with pytest.raises(StoreUnavailable):
            await trail.record("logout", user_id=1, required=True)
    assert sum(1 for r in caplog.records if r.getMessage() == "logout") == 2
    await engine.dispose()
