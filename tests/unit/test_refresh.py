"""Refresh tokens: single use, rotation, reuse detection, never past the session's end."""

from __future__ import annotations

import asyncio

import pytest

from bastion.clock import FakeClock
from bastion.exceptions import TokenError
from bastion.refresh import RefreshTokenReused, RefreshTokens, _digest
from bastion.sessions import SessionManager, SessionPolicy
from bastion.stores.memory import MemoryStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sessions(clock: FakeClock) -> SessionManager:
    policy = SessionPolicy(idle_timeout=600, absolute_timeout=3600, api_idle_timeout=7200)
    return SessionManager(MemoryStore(clock=clock), policy, clock)


@pytest.fixture
def tokens(sessions: SessionManager, clock: FakeClock) -> RefreshTokens:
    return RefreshTokens(sessions.store, sessions, ttl=1800, clock=clock)


async def test_refresh_tokens_are_opaque_and_stored_hashed(
    sessions: SessionManager, tokens: RefreshTokens
) -> None:
    _, session = await sessions.create(1, kind="api")
    token, lifetime = await tokens.issue(session)
    assert len(token) == 43
    assert "." not in token
    assert lifetime == 1800
    assert await sessions.store.get(f"r:{token}") is None


async def test_rotation_spends_the_old_token_and_issues_a_new_one(
    sessions: SessionManager, tokens: RefreshTokens
) -> None:
    _, session = await sessions.create(1, kind="api")
    first, _ = await tokens.issue(session)
    rotation = await tokens.rotate(first)
    assert rotation.token != first
    assert rotation.session.key == session.key
    second = await tokens.rotate(rotation.token)
    assert second.token not in (first, rotation.token)


async def test_refresh_reuse_ends_session(sessions: SessionManager, tokens: RefreshTokens) -> None:
    _, session = await sessions.create(1, kind="api")
    first, _ = await tokens.issue(session)
    newer = await tokens.rotate(first)
    with pytest.raises(RefreshTokenReused):
        await tokens.rotate(first)
    assert await sessions.get(session.key) is None
    with pytest.raises(TokenError):
        await tokens.rotate(newer.token)


async def test_concurrent_refreshes_never_yield_two_usable_tokens(
    sessions: SessionManager, tokens: RefreshTokens
) -> None:
    _, session = await sessions.create(1, kind="api")
    token, _ = await tokens.issue(session)
    results = await asyncio.gather(
        *(tokens.rotate(token) for _ in range(10)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, TokenError) for r in results if isinstance(r, BaseException))


async def test_refresh_never_extends_past_the_absolute_end(
    sessions: SessionManager, tokens: RefreshTokens, clock: FakeClock
) -> None:
    _, session = await sessions.create(1, kind="api")
    token, _ = await tokens.issue(session)
    clock.advance(1500)
    token = (await tokens.rotate(token)).token
    clock.advance(1500)  # 600 s of the session's 3600 s absolute lifetime remain
    rotation = await tokens.rotate(token)
    assert rotation.expires_in <= 600
    remaining = await sessions.store.ttl(f"r:{_digest(rotation.token)}")
    assert remaining is not None
    assert remaining <= 600
    clock.advance(601)
    with pytest.raises(TokenError):
        await tokens.rotate(rotation.token)


async def test_refresh_of_an_ended_session_is_refused(
    sessions: SessionManager, tokens: RefreshTokens
) -> None:
    _, session = await sessions.create(1, kind="api")
    token, _ = await tokens.issue(session)
    await sessions.end(session.key)
    with pytest.raises(TokenError, match="ended"):
        await tokens.rotate(token)


async def test_refresh_token_idle_lifetime_expires(
    sessions: SessionManager, tokens: RefreshTokens, clock: FakeClock
) -> None:
    _, session = await sessions.create(1, kind="api")
    token, _ = await tokens.issue(session)
    clock.advance(1801)
    with pytest.raises(TokenError):
        await tokens.rotate(token)


@pytest.mark.parametrize("token", ["", "x", "a" * 42, "a" * 44, "é" * 43, "a.b.c", None, 12])
async def test_malformed_refresh_tokens_are_refused_without_store_access(
    tokens: RefreshTokens, token: object
) -> None:
    with pytest.raises(TokenError, match="malformed"):
        await tokens.rotate(token)  # type: ignore[arg-type]


async def test_revoke_ends_the_session_and_ignores_unknown_tokens(
    sessions: SessionManager, tokens: RefreshTokens
) -> None:
    _, session = await sessions.create(1, kind="api")
    token, _ = await tokens.issue(session)
    assert await tokens.revoke("unknown-token") is None
    revoked = await tokens.revoke(token)
    assert revoked is not None
    assert revoked.key == session.key
    assert await sessions.get(session.key) is None
