"""Refresh tokens: single use, rotation, reuse detection, never past the session's end."""

from __future__ import annotations

import asyncio
import inspect
import json
import secrets
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio

from bastion.clock import FakeClock
from bastion.exceptions import TokenError
from bastion.refresh import RefreshTokenReused, RefreshTokens, Rotation, _digest
from bastion.sessions import SessionManager, SessionPolicy
from bastion.stores import Store
from tests.backends import Backend, backend_param, open_store, resolve_backend

REFRESH_TTL = 1800
WRITES = frozenset({"set", "add", "replace", "incr", "touch", "sadd"})


@dataclass
class Gate:
    """What an :class:`ObservedStore` and its children share: the writes made through them,
    and a point at which the caller is held until the test lets it go."""

    writes: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    hold_after: int | None = None
    calls: int = 0
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def arm(self, hold_after: int) -> None:
        """Hold the caller once, right after the ``hold_after``-th operation from now."""
        self.calls, self.hold_after = 0, hold_after

    async def passed(self) -> None:
        self.calls += 1
        if self.calls == self.hold_after:
            self.held.set()
            await self.release.wait()


class ObservedStore:
    """Any store, with every write recorded and an optional hold between two operations."""

    def __init__(self, inner: Store, gate: Gate) -> None:
        self._inner = inner
        self._gate = gate

    def child(self, namespace: str) -> Store:
        return cast(Store, ObservedStore(self._inner.child(namespace), self._gate))

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(operation):
            return operation

        async def observed(*args: Any, **kwargs: Any) -> Any:
            if name in WRITES:
                self._gate.writes.append((name, args))
            result = await operation(*args, **kwargs)
            await self._gate.passed()
            return result

        return observed


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Memory, unless a test names its backends (``indirect`` parametrization)."""
    if not hasattr(request, "param"):
        return Backend("memory")
    return resolve_backend(request, tmp_path)


@pytest_asyncio.fixture
async def store(backend: Backend, clock: FakeClock, gate: Gate) -> AsyncIterator[Store]:
    async with open_store(backend, clock, "refresh") as opened:
        yield cast(Store, ObservedStore(opened, gate))


@pytest.fixture
def sessions(store: Store, clock: FakeClock) -> SessionManager:
    policy = SessionPolicy(idle_timeout=600, absolute_timeout=3600, api_idle_timeout=7200)
    return SessionManager(store, policy, clock)


@pytest.fixture
def tokens(sessions: SessionManager, clock: FakeClock) -> RefreshTokens:
    return RefreshTokens(sessions.store, sessions, ttl=REFRESH_TTL, clock=clock)


def written_text(gate: Gate) -> list[str]:
    """Every key, value and member written so far, as text."""
    return [
        arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
        for _, args in gate.writes
        for arg in args
    ]


async def test_refresh_tokens_are_opaque_and_stored_hashed(
    sessions: SessionManager, tokens: RefreshTokens, gate: Gate
) -> None:
    _, session = await sessions.create(1, kind="api")
    token, lifetime = await tokens.issue(session)
    assert len(token) == 43
    assert "." not in token
    assert lifetime == REFRESH_TTL
    stored = await sessions.store.get(f"r:{_digest(token)}")
    assert stored is not None
    assert json.loads(stored) == {"sid": session.key, "uid": 1}
    rotation = await tokens.rotate(token)
    # Neither the token nor its successor is ever written as such, in a key or a value.
    written = written_text(gate)
    assert any(_digest(token) in text for text in written)
    assert not [text for text in written if token in text or rotation.token in text]


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
    tokens: RefreshTokens, gate: Gate, token: object
) -> None:
    with pytest.raises(TokenError, match="malformed"):
        await tokens.rotate(token)  # type: ignore[arg-type]
    assert await tokens.revoke(token) is None  # type: ignore[arg-type]
    assert gate.calls == 0


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


async def test_spent_refresh_token_replayed_just_before_its_lifetime_ends_still_ends_session(
    sessions: SessionManager, tokens: RefreshTokens, clock: FakeClock
) -> None:
    _, session = await sessions.create(1, kind="api")
    token, lifetime = await tokens.issue(session)
    newer = await tokens.rotate(token)
    clock.advance(lifetime - 1)  # the spent token would still be live had it not been used
    assert await sessions.get(session.key) is not None
    with pytest.raises(RefreshTokenReused):
        await tokens.rotate(token)
    assert await sessions.get(session.key) is None
    with pytest.raises(TokenError):
        await tokens.rotate(newer.token)


async def test_refresh_record_naming_another_user_than_its_session_is_refused(
    sessions: SessionManager, tokens: RefreshTokens
) -> None:
    _, session = await sessions.create(1, kind="api")
    token = secrets.token_urlsafe(32)
    forged = json.dumps({"sid": session.key, "uid": 2}).encode()
    await sessions.store.set(f"r:{_digest(token)}", forged, ttl=REFRESH_TTL)
    with pytest.raises(TokenError, match="ended"):
        await tokens.rotate(token)


async def test_unknown_refresh_tokens_and_revocations_write_nothing(
    sessions: SessionManager, tokens: RefreshTokens, gate: Gate
) -> None:
    _, session = await sessions.create(1, kind="api")
    await tokens.issue(session)
    before = len(gate.writes)
    for _ in range(20):
        garbage = secrets.token_urlsafe(32)
        with pytest.raises(TokenError, match="unknown"):
            await tokens.rotate(garbage)
        assert await tokens.revoke(garbage) is None
    assert gate.writes[before:] == []


Outcome = Rotation | TokenError


async def settle(rotation: Awaitable[Rotation]) -> Outcome:
    try:
        return await rotation
    except TokenError as refused:
        return refused


async def race(tokens: RefreshTokens, token: str, gate: Gate, hold_after: int) -> list[Outcome]:
    """Two refreshes with ``token``: the first is held after its ``hold_after``-th store
    operation while the second runs to its end, then the first goes on."""
    gate.arm(hold_after)
    first = asyncio.create_task(settle(tokens.rotate(token)))
    held = asyncio.create_task(gate.held.wait())
    await asyncio.wait({first, held}, return_when=asyncio.FIRST_COMPLETED)
    held.cancel()
    gate.hold_after = None  # the first was held, or finished before its hold: never the second
    second = await settle(tokens.rotate(token))
    gate.release.set()
    return [await first, second]


ALL_BACKENDS = [
    backend_param(name) for name in ("memory", "sqlite", "postgres", "redis", "redis-cluster")
]


@pytest.mark.parametrize("backend", ALL_BACKENDS, indirect=True)
@pytest.mark.parametrize("hold_after", range(1, 8))
async def test_two_refreshes_with_one_token_end_the_session_whatever_the_interleaving(
    sessions: SessionManager, tokens: RefreshTokens, gate: Gate, hold_after: int
) -> None:
    _, session = await sessions.create(1, kind="api")
    token, _ = await tokens.issue(session)

    outcomes = await race(tokens, token, gate, hold_after)

    assert [type(o) for o in outcomes].count(RefreshTokenReused) == 1, outcomes
    assert await sessions.get(session.key) is None
    for successor in (o for o in outcomes if isinstance(o, Rotation)):
        with pytest.raises(TokenError):
            await tokens.rotate(successor.token)
