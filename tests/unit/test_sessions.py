"""bastion.sessions: ids, hashed keys, timeouts, touch throttling, rotation, ending, races.

Everything runs on a FakeClock; the store is a MemoryStore (and, for the core behaviours,
SQLite through SQLStore) wrapped in a recorder that counts calls and remembers every byte
written, so tests can assert what the store did and did not see.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import json
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bastion.clock import FakeClock
from bastion.csrf import SECRET_LENGTH
from bastion.db import create_engine
from bastion.exceptions import TokenError
from bastion.refresh import RefreshTokens
from bastion.services import session_policy
from bastion.sessions import (
    MAX_USER_AGENT,
    Session,
    SessionManager,
    SessionPolicy,
    is_session_key,
    session_key,
)
from bastion.settings import Settings
from bastion.stores.base import Store
from bastion.stores.memory import MemoryStore
from bastion.stores.sql import SQLStore, create_store_tables

IDLE = 600
ABSOLUTE = 3_600
REMEMBER = 86_400
REMEMBER_IDLE = 14_400
API_IDLE = 7_200
TOUCH = 60
POLICY = SessionPolicy(
    idle_timeout=IDLE,
    absolute_timeout=ABSOLUTE,
    remember_me_timeout=REMEMBER,
    remember_me_idle_timeout=REMEMBER_IDLE,
    api_idle_timeout=API_IDLE,
    touch_interval=TOUCH,
)
WRITES = ("set", "add", "replace", "incr", "touch", "sadd")


class RecordingStore:
    """Passes every call to ``inner``; counts calls and keeps everything written."""

    def __init__(self, inner: Store, *, ignore_ttl: bool = False) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.written: list[str | bytes] = []
        # Like a backend whose expiry is coarser than the session's own (Redis rounds TTLs
        # to whole seconds): the manager must still refuse what its clock says is over.
        self.ignore_ttl = ignore_ttl

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    def child(self, namespace: str) -> Store:
        return self.inner.child(namespace)

    @property
    def writes(self) -> int:
        return sum(self.calls[name] for name in WRITES)

    def _ttl(self, ttl: float | None) -> float | None:
        return None if self.ignore_ttl else ttl

    async def get(self, key: str) -> bytes | None:
        self.calls["get"] += 1
        return await self.inner.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls["get_many"] += 1
        return await self.inner.get_many(keys)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.calls["set"] += 1
        self.written += [key, value]
        await self.inner.set(key, value, ttl=self._ttl(ttl))

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        self.calls["add"] += 1
        self.written += [key, value]
        return await self.inner.add(key, value, ttl=self._ttl(ttl))

    async def replace(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        self.calls["replace"] += 1
        self.written += [key, value]
        return await self.inner.replace(key, value, ttl=self._ttl(ttl))

    async def pop(self, key: str) -> bytes | None:
        self.calls["pop"] += 1
        return await self.inner.pop(key)

    async def delete(self, *keys: str) -> int:
        self.calls["delete"] += 1
        return await self.inner.delete(*keys)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        self.calls["incr"] += 1
        return await self.inner.incr(key, amount, ttl=ttl)

    async def ttl(self, key: str) -> float | None:
        self.calls["ttl"] += 1
        return await self.inner.ttl(key)

    async def touch(self, key: str, ttl: float | None) -> bool:
        self.calls["touch"] += 1
        return await self.inner.touch(key, self._ttl(ttl))

    async def sadd(self, key: str, *members: str, ttl: float | None = None) -> int:
        self.calls["sadd"] += 1
        self.written += [key, *members]
        return await self.inner.sadd(key, *members, ttl=ttl)

    async def srem(self, key: str, *members: str) -> int:
        self.calls["srem"] += 1
        return await self.inner.srem(key, *members)

    async def smembers(self, key: str) -> builtins.set[str]:
        self.calls["smembers"] += 1
        return await self.inner.smembers(key)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> RecordingStore:
    return RecordingStore(MemoryStore(namespace="sessions", clock=clock))


@pytest.fixture
def manager(store: RecordingStore, clock: FakeClock) -> SessionManager:
    return SessionManager(store, POLICY, clock)


def index_key(user_id: int) -> str:
    return f"{{u:{user_id}}}:index"


# ---- ids and keys ------------------------------------------------------------------------


async def test_ids_are_256_bit_base64url_and_distinct(manager: SessionManager) -> None:
    ids = set()
    for _ in range(300):
        raw_id, _session = await manager.create(1)
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", raw_id)
        assert len(base64.urlsafe_b64decode(raw_id + "=" * (-len(raw_id) % 4))) >= 32
        ids.add(raw_id)
    assert len(ids) == 300


async def test_key_is_sha256_of_the_id(manager: SessionManager) -> None:
    raw_id, session = await manager.create(1)
    assert session.key == hashlib.sha256(raw_id.encode()).hexdigest()
    assert session.key == session_key(raw_id)
    assert is_session_key(session.key)
    assert session.ref == session.key[:12]


async def test_raw_id_never_reaches_the_store(
    manager: SessionManager, store: RecordingStore, clock: FakeClock
) -> None:
    raw_id, _ = await manager.create(7, username="ann", ip="192.0.2.1", user_agent="UA")
    clock.advance(TOUCH + 1)
    loaded = await manager.load(raw_id)
    assert loaded is not None
    await manager.touch(loaded)
    await manager.update(loaded, username="ann2")
    rotated = await manager.rotate(loaded)
    assert rotated is not None
    new_raw, _ = rotated
    assert store.written, "the recorder saw no writes"
    for raw in (raw_id, new_raw):
        for item in store.written:
            text = item.decode() if isinstance(item, bytes) else item
            assert raw not in text


async def test_record_is_stored_only_under_the_hash(
    manager: SessionManager, store: RecordingStore
) -> None:
    raw_id, session = await manager.create(7)
    record = await store.inner.get(f"s:{session.key}")
    assert record is not None
    assert raw_id.encode() not in record
    assert await store.inner.get(f"s:{raw_id}") is None
    assert await store.inner.smembers(index_key(7)) == {session.key}
    assert await store.inner.smembers("all") == {session.key}


async def test_load_returns_the_issued_session(manager: SessionManager) -> None:
    raw_id, session = await manager.create(
        5, username="bob", roles=["b", "a"], ip="192.0.2.9", user_agent="Firefox"
    )
    loaded = await manager.load(raw_id)
    assert loaded == session
    assert loaded.roles == ("a", "b")
    assert loaded.kind == "browser"
    assert len(loaded.csrf_secret) == SECRET_LENGTH


@pytest.mark.parametrize(
    "raw_id",
    [
        None,
        "",
        "a" * 42,
        "a" * 44,
        "a" * 43 + "\n",
        "\n" + "a" * 43,
        "a" * 42 + "=",
        "a" * 42 + "+",
        "a" * 42 + "/",
        "a" * 42 + " ",
        "a" * 42 + "\x00",
        "é" * 43,
        "a" * 42 + "é",
        "a" * 42 + "\u0661",  # ARABIC-INDIC DIGIT ONE
        "a" * 10_000,
    ],
)
async def test_load_refuses_ids_never_issued_without_touching_the_store(
    manager: SessionManager, store: RecordingStore, raw_id: str | None
) -> None:
    assert await manager.load(raw_id) is None
    assert sum(store.calls.values()) == 0


async def test_load_of_unknown_well_formed_id_is_none(manager: SessionManager) -> None:
    await manager.create(1)
    assert await manager.load(secrets.token_urlsafe(32)) is None


async def test_public_key_cannot_be_used_as_a_cookie(manager: SessionManager) -> None:
    _raw_id, session = await manager.create(1)
    assert await manager.load(session.key) is None


@pytest.mark.parametrize("key", ["", "s", "A" * 64, "g" * 64, "a" * 63, "a" * 64 + "\n", "a" * 65])
async def test_get_refuses_malformed_keys_without_touching_the_store(
    manager: SessionManager, store: RecordingStore, key: str
) -> None:
    assert await manager.get(key) is None
    assert await manager.end(key) is False
    assert sum(store.calls.values()) == 0


# ---- timeouts and activity -------------------------------------------------------------


async def test_idle_timeout_ends_the_session_and_deletes_the_record(
    manager: SessionManager, store: RecordingStore, clock: FakeClock
) -> None:
    raw_id, session = await manager.create(3)
    clock.advance(IDLE + 1)
    assert await manager.load(raw_id) is None
    assert await store.inner.get(f"s:{session.key}") is None
    assert await manager.list_for_user(3) == []


async def test_idle_timeout_holds_even_when_the_store_keeps_the_record(
    clock: FakeClock,
) -> None:
    store = RecordingStore(MemoryStore(namespace="sessions", clock=clock), ignore_ttl=True)
    manager = SessionManager(store, POLICY, clock)
    raw_id, session = await manager.create(3)
    clock.advance(IDLE)  # exactly at the idle end: over
    assert await manager.load(raw_id) is None
    assert await store.inner.get(f"s:{session.key}") is None, "the dead record was kept"
    assert await store.inner.smembers(index_key(3)) == set()


async def test_absolute_timeout_holds_even_when_the_store_keeps_the_record(
    clock: FakeClock,
) -> None:
    store = RecordingStore(MemoryStore(namespace="sessions", clock=clock), ignore_ttl=True)
    manager = SessionManager(store, POLICY, clock)
    raw_id, _ = await manager.create(3)
    for _ in range(ABSOLUTE // (IDLE // 2) + 1):
        clock.advance(IDLE // 2)
        session = await manager.load(raw_id)
        if session is None:
            break
        await manager.touch(session)
    assert clock.now - 1_700_000_000.0 >= ABSOLUTE
    assert await manager.load(raw_id) is None


async def test_activity_within_idle_keeps_the_session_alive(
    manager: SessionManager, clock: FakeClock
) -> None:
    raw_id, _ = await manager.create(3)
    for _ in range(4):  # 4 * (IDLE - 10) > IDLE: only the touches keep it alive
        clock.advance(IDLE - 10)
        session = await manager.load(raw_id)
        assert session is not None
        await manager.touch(session)
    assert await manager.load(raw_id) is not None


async def test_touch_writes_at_most_once_per_interval(
    manager: SessionManager, store: RecordingStore, clock: FakeClock
) -> None:
    raw_id, session = await manager.create(3)
    start = session.last_seen_at
    store.calls.clear()

    async def visit(after: float) -> Session:
        clock.advance(after)
        loaded = await manager.load(raw_id)
        assert loaded is not None
        return await manager.touch(loaded)

    touched = await visit(TOUCH - 1)
    assert store.writes == 0
    assert touched.last_seen_at == start

    touched = await visit(2)  # TOUCH + 1 since the last write
    assert store.writes == 1
    assert touched.last_seen_at == start + TOUCH + 1
    loaded = await manager.load(raw_id)
    assert loaded is not None
    assert loaded.last_seen_at == touched.last_seen_at

    for _ in range(5):
        await visit(10)  # 50 s in all: still inside the interval
    assert store.writes == 1

    await visit(10)  # 60 s since the last write
    assert store.writes == 2


async def test_touch_extends_the_store_ttl(
    manager: SessionManager, store: RecordingStore, clock: FakeClock
) -> None:
    raw_id, session = await manager.create(3)
    clock.advance(IDLE - 5)
    loaded = await manager.load(raw_id)
    assert loaded is not None
    await manager.touch(loaded)
    assert await store.inner.ttl(f"s:{session.key}") == pytest.approx(IDLE)


async def test_absolute_timeout_ends_an_active_session(
    manager: SessionManager, clock: FakeClock
) -> None:
    raw_id, session = await manager.create(3)
    assert session.absolute_expires_at == session.created_at + ABSOLUTE
    elapsed = 0
    while elapsed + IDLE // 2 < ABSOLUTE:
        clock.advance(IDLE // 2)
        elapsed += IDLE // 2
        loaded = await manager.load(raw_id)
        assert loaded is not None, f"ended early after {elapsed} s"
        await manager.touch(loaded)
    clock.advance(ABSOLUTE - elapsed)
    assert await manager.load(raw_id) is None


async def test_remember_me_uses_the_remember_me_timeout(
    manager: SessionManager, clock: FakeClock
) -> None:
    raw_id, session = await manager.create(3, remember=True)
    assert session.remember is True
    assert session.absolute_expires_at == session.created_at + REMEMBER
    # Still alive well past the ordinary absolute timeout while active...
    for _ in range(2 * ABSOLUTE // (IDLE // 2)):
        clock.advance(IDLE // 2)
        loaded = await manager.load(raw_id)
        assert loaded is not None
        await manager.touch(loaded)
    # ...but its own idle timeout still applies.
    clock.advance(REMEMBER_IDLE + 1)
    assert await manager.load(raw_id) is None


async def test_remember_me_sessions_outlive_the_ordinary_idle_timeout(
    manager: SessionManager, clock: FakeClock
) -> None:
    remembered_id, remembered = await manager.create(3, remember=True)
    plain_id, plain = await manager.create(3)
    assert (remembered.idle_timeout, plain.idle_timeout) == (REMEMBER_IDLE, IDLE)
    clock.advance(IDLE + 1)  # away longer than an ordinary session may idle
    assert await manager.load(plain_id) is None
    assert await manager.load(remembered_id) is not None
    clock.advance(REMEMBER_IDLE - IDLE)  # REMEMBER_IDLE + 1 without a visit in all
    assert await manager.load(remembered_id) is None


async def test_the_remembered_idle_timeout_never_passes_the_absolute_end(
    store: RecordingStore, clock: FakeClock
) -> None:
    policy = SessionPolicy(remember_me_timeout=1_000, remember_me_idle_timeout=5_000)
    manager = SessionManager(store, policy, clock)
    raw_id, session = await manager.create(3, remember=True)
    assert session.expires_at == session.created_at + 1_000
    clock.advance(1_000)
    assert await manager.load(raw_id) is None


async def test_touch_interval_is_at_most_a_quarter_of_the_idle_timeout(
    store: RecordingStore, clock: FakeClock
) -> None:
    short = SessionPolicy(
        idle_timeout=40, remember_me_idle_timeout=100, api_idle_timeout=8, touch_interval=60
    )
    cases: list[tuple[SessionPolicy, dict[str, Any], float]] = [
        (short, {}, 10),
        (short, {"remember": True}, 25),
        (short, {"kind": "api"}, 2),
        (POLICY, {}, TOUCH),  # long timeouts keep the configured interval
        (SessionPolicy(touch_interval=0), {}, 0),
    ]
    for policy, kind, expected in cases:
        manager = SessionManager(store, policy, clock)
        _, session = await manager.create(1, **kind)
        assert manager.touch_interval(session) == expected, (policy, kind)


@pytest.mark.parametrize("remember", [False, True], ids=["browser", "remember-me"])
async def test_a_session_used_every_half_idle_period_never_expires(
    store: RecordingStore, clock: FakeClock, remember: bool
) -> None:
    # Idle timeouts shorter than the configured write interval: only a write interval
    # derived from the session's own idle timeout keeps an active session alive.
    policy = SessionPolicy(
        idle_timeout=40,
        absolute_timeout=10_000,
        remember_me_timeout=10_000,
        remember_me_idle_timeout=50,
        touch_interval=60,
    )
    manager = SessionManager(store, policy, clock)
    raw_id, session = await manager.create(3, remember=remember)
    for step in range(10 * session.idle_timeout // (session.idle_timeout // 2)):
        clock.advance(session.idle_timeout // 2)
        loaded = await manager.load(raw_id)
        assert loaded is not None, f"ended after {step + 1} half idle periods of activity"
        await manager.touch(loaded)
    clock.advance(session.idle_timeout)  # then idle for a whole period: it ends
    assert await manager.load(raw_id) is None


async def test_a_refresh_chain_rotated_every_half_ttl_keeps_going(tmp_path: Path) -> None:
    # The settings as an operator would write them: refresh TTL below the write interval.
    settings = Settings(
        env="test", data_dir=tmp_path, refresh_token_ttl=40, session_touch_interval=60
    )
    clock = FakeClock()
    manager = SessionManager(
        MemoryStore(namespace="s", clock=clock), session_policy(settings), clock
    )
    tokens = RefreshTokens(manager.store, manager, ttl=settings.refresh_token_ttl, clock=clock)
    _, session = await manager.create(3, kind="api")
    token, _ = await tokens.issue(session)
    for _ in range(10):
        clock.advance(settings.refresh_token_ttl // 2)
        token = (await tokens.rotate(token)).token
    clock.advance(settings.refresh_token_ttl)  # unused for a whole TTL: the chain ends
    with pytest.raises(TokenError):
        await tokens.rotate(token)


async def test_api_sessions_use_the_api_idle_timeout(
    manager: SessionManager, clock: FakeClock
) -> None:
    raw_id, session = await manager.create(3, kind="api")
    browser_id, _ = await manager.create(3)
    assert session.kind == "api"
    assert session.idle_timeout == API_IDLE
    clock.advance(IDLE + 1)
    assert await manager.load(browser_id) is None
    assert await manager.load(raw_id) is not None
    clock.advance(API_IDLE)
    assert await manager.load(raw_id) is None


async def test_user_agent_is_truncated(manager: SessionManager) -> None:
    _, session = await manager.create(1, user_agent="x" * 5000)
    assert session.user_agent == "x" * MAX_USER_AGENT
    _, session = await manager.create(1, user_agent="")
    assert session.user_agent is None


# ---- creation, rotation, ending ----------------------------------------------------------


async def test_login_with_replaces_ends_the_previous_session(
    manager: SessionManager, store: RecordingStore
) -> None:
    old_id, old = await manager.create(4)
    new_id, new = await manager.create(4, replaces=old.key)
    assert new_id != old_id
    assert new.key != old.key
    assert await manager.load(old_id) is None
    assert await manager.load(new_id) is not None
    assert await store.inner.smembers(index_key(4)) == {new.key}


async def test_rotate_gives_a_new_id_and_csrf_secret_and_kills_the_old(
    manager: SessionManager, clock: FakeClock
) -> None:
    old_id, old = await manager.create(4, username="ann", roles=["admin"], remember=True)
    clock.advance(100)
    rotated = await manager.rotate(old)
    assert rotated is not None
    new_id, new = rotated
    assert new_id != old_id
    assert new.key == session_key(new_id) != old.key
    assert new.csrf_secret != old.csrf_secret
    assert await manager.load(old_id) is None
    assert await manager.load(new_id) == new
    # Who and when stay the same: rotation never extends the absolute end.
    assert (new.user_id, new.username, new.roles, new.remember) == (4, "ann", ("admin",), True)
    assert new.created_at == old.created_at
    assert new.absolute_expires_at == old.absolute_expires_at
    assert new.last_seen_at == clock.now
    assert [s.key for s in await manager.list_for_user(4)] == [new.key]


async def test_rotate_after_a_privilege_change_carries_the_new_roles(
    manager: SessionManager,
) -> None:
    old_id, old = await manager.create(4, roles=["admin"])
    rotated = await manager.rotate(old, roles=["staff", "admin"])
    assert rotated is not None
    new_id, new = rotated
    assert new.roles == ("admin", "staff")
    assert new.csrf_secret != old.csrf_secret
    assert await manager.load(new_id) == new
    assert await manager.load(old_id) is None


async def test_rotate_of_an_ended_session_returns_none(
    manager: SessionManager, store: RecordingStore
) -> None:
    _, session = await manager.create(4)
    assert await manager.end(session.key) is True
    assert await manager.rotate(session) is None
    assert await manager.list_for_user(4) == []
    assert await store.inner.smembers(index_key(4)) == set()


async def test_rotate_past_the_absolute_end_returns_none(clock: FakeClock) -> None:
    # A backend with coarse expiry may still hold the record a moment after its end.
    store = RecordingStore(MemoryStore(namespace="sessions", clock=clock), ignore_ttl=True)
    manager = SessionManager(store, POLICY, clock)
    _, session = await manager.create(4)
    clock.advance(ABSOLUTE)
    assert await manager.rotate(session) is None
    assert await manager.list_all() == []


async def test_end_reports_whether_the_session_was_live(manager: SessionManager) -> None:
    raw_id, session = await manager.create(4)
    assert await manager.end(session.key) is True
    assert await manager.end(session.key) is False
    assert await manager.load(raw_id) is None
    assert await manager.get(session.key) is None


async def test_end_all_for_user_keeps_only_the_named_session(manager: SessionManager) -> None:
    a_id, a = await manager.create(8)
    b_id, b = await manager.create(8)
    c_id, c = await manager.create(8)
    other_id, _ = await manager.create(9)
    ended = await manager.end_all_for_user(8, keep=b.key)
    assert sorted(ended) == sorted([a.key, c.key])
    assert await manager.load(a_id) is None
    assert await manager.load(c_id) is None
    assert await manager.load(b_id) is not None
    assert await manager.load(other_id) is not None
    assert await manager.end_all_for_user(8) == [b.key]
    assert await manager.load(b_id) is None
    assert await manager.end_all_for_user(8) == []


async def test_list_for_user_is_newest_first(manager: SessionManager, clock: FakeClock) -> None:
    keys = []
    for _ in range(4):
        _, session = await manager.create(2)
        keys.append(session.key)
        clock.advance(5)
    await manager.create(3)
    listed = await manager.list_for_user(2)
    assert [s.key for s in listed] == keys[::-1]


async def test_list_for_user_drops_dead_index_entries(
    manager: SessionManager, store: RecordingStore, clock: FakeClock
) -> None:
    _, gone = await manager.create(2)
    clock.advance(IDLE // 2)
    live_id, live = await manager.create(2)
    await store.inner.delete(f"s:{gone.key}")  # vanished behind the manager's back
    await store.inner.sadd(index_key(2), "not-a-key")
    listed = await manager.list_for_user(2)
    assert [s.key for s in listed] == [live.key]
    assert await store.inner.smembers(index_key(2)) == {live.key}
    # An idle-expired one is dropped as well.
    clock.advance(IDLE + 1)
    assert await manager.list_for_user(2) == []
    assert await store.inner.smembers(index_key(2)) == set()
    assert await manager.load(live_id) is None


async def test_list_all_is_newest_first_over_every_user(
    manager: SessionManager, store: RecordingStore, clock: FakeClock
) -> None:
    _, first = await manager.create(1)
    clock.advance(1)
    _, second = await manager.create(2)
    clock.advance(1)
    _, third = await manager.create(1)
    await store.inner.delete(f"s:{second.key}")
    assert [s.key for s in await manager.list_all()] == [third.key, first.key]
    assert await store.inner.smembers("all") == {first.key, third.key}


async def test_max_per_user_ends_the_oldest(store: RecordingStore, clock: FakeClock) -> None:
    manager = SessionManager(store, SessionPolicy(max_per_user=2), clock)
    first_id, _ = await manager.create(6)
    clock.advance(1)
    second_id, _ = await manager.create(6)
    clock.advance(1)
    third_id, _ = await manager.create(6)
    other_id, _ = await manager.create(7)
    assert await manager.load(first_id) is None
    assert await manager.load(second_id) is not None
    assert await manager.load(third_id) is not None
    assert await manager.load(other_id) is not None
    assert len(await manager.list_for_user(6)) == 2


async def test_max_per_user_never_ends_the_session_just_created(
    store: RecordingStore, clock: FakeClock
) -> None:
    # Several logins within one clock tick: the new session must survive the limit.
    manager = SessionManager(store, SessionPolicy(max_per_user=1), clock)
    for _ in range(20):
        raw_id, _ = await manager.create(6)
        assert await manager.load(raw_id) is not None
        assert len(await manager.list_for_user(6)) == 1


async def test_update_user_refreshes_the_snapshot_everywhere(
    manager: SessionManager,
) -> None:
    ids = [(await manager.create(5, username="old", roles=["admin", "user"]))[0] for _ in range(3)]
    other_id, _ = await manager.create(6, username="other", roles=["admin"])
    assert await manager.update_user(5, username="new", roles=["user"]) == 3
    for raw_id in ids:
        loaded = await manager.load(raw_id)
        assert loaded is not None
        assert (loaded.username, loaded.roles) == ("new", ("user",))
    other = await manager.load(other_id)
    assert other is not None
    assert (other.username, other.roles) == ("other", ("admin",))
    # Only what is given changes.
    assert await manager.update_user(5, roles=["b", "a"]) == 3
    loaded = await manager.load(ids[0])
    assert loaded is not None
    assert (loaded.username, loaded.roles) == ("new", ("a", "b"))


# ---- races: a write-back never resurrects an ended session -----------------------------


async def test_touch_after_end_does_not_resurrect(
    manager: SessionManager, store: RecordingStore, clock: FakeClock
) -> None:
    raw_id, session = await manager.create(4)
    clock.advance(TOUCH + 1)
    loaded = await manager.load(raw_id)
    assert loaded is not None
    await manager.end(session.key)  # logout or revocation, from another request
    await manager.touch(loaded)  # the first request writes back its last-seen time
    assert await manager.load(raw_id) is None
    assert await store.inner.get(f"s:{session.key}") is None
    assert await manager.list_all() == []


async def test_update_after_end_does_not_resurrect(manager: SessionManager) -> None:
    raw_id, _ = await manager.create(4)
    loaded = await manager.load(raw_id)
    assert loaded is not None
    await manager.end_all_for_user(4)
    await manager.update(loaded, username="x")
    assert await manager.load(raw_id) is None
    assert await manager.update_user(4, roles=["admin"]) == 0
    assert await manager.load(raw_id) is None


# ---- corrupted records -------------------------------------------------------------------


def _record(stored_key: str, **changes: Any) -> bytes:
    """A record as the manager writes it, with some fields spoilt."""
    fields: dict[str, Any] = {
        "key": stored_key,
        "user_id": 1,
        "created_at": 1_700_000_000.0,
        "last_seen_at": 1_700_000_000.0,
        "absolute_expires_at": 1_700_003_600.0,
        "idle_timeout": 600,
        "csrf_secret": "s" * 43,
    }
    fields.update(changes)
    return json.dumps(fields).encode()


async def test_a_well_formed_record_loads(manager: SessionManager, store: RecordingStore) -> None:
    # The control for the corruption cases below: only the spoilt field makes them fail.
    raw_id, session = await manager.create(1)
    await store.inner.set(f"s:{session.key}", _record(session.key, roles=["x"]))
    loaded = await manager.load(raw_id)
    assert loaded is not None
    assert loaded.roles == ("x",)


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\xff\xfe\x00garbage",
        b"not json",
        b"null",
        b"42",
        b'"text"',
        b"[1, 2, 3]",
        b"{}",
        b"[" * 100_000,
    ],
)
async def test_garbage_record_is_treated_as_absent(
    manager: SessionManager, store: RecordingStore, garbage: bytes
) -> None:
    raw_id, session = await manager.create(1)
    await store.inner.set(f"s:{session.key}", garbage)
    assert await manager.load(raw_id) is None
    assert await manager.get(session.key) is None
    assert await manager.list_for_user(1) == []
    assert await manager.list_all() == []
    await manager.end(session.key)  # never raises either
    assert await store.inner.get(f"s:{session.key}") is None


@pytest.mark.parametrize(
    "changes",
    [
        {"unexpected": 1},
        {"roles": 5},
        {"roles": None},
        {"roles": [1, 2]},
        {"user_id": "1"},
        {"user_id": True},
        {"user_id": None},
        {"last_seen_at": "soon"},
        {"last_seen_at": float("nan")},
        {"absolute_expires_at": float("inf")},
        {"absolute_expires_at": []},
        {"idle_timeout": None},
        {"csrf_secret": 5},
        {"remember": "yes"},
        {"kind": "admin"},
        {"ip": 7},
        {"key": "0" * 64},  # a record stored under another session's key
    ],
)
async def test_record_with_bad_fields_is_treated_as_absent(
    manager: SessionManager, store: RecordingStore, changes: dict[str, Any]
) -> None:
    raw_id, session = await manager.create(1)
    await store.inner.set(f"s:{session.key}", _record(session.key, **changes))
    assert await manager.load(raw_id) is None
    assert await manager.list_for_user(1) == []
    await manager.end(session.key)
    assert await store.inner.get(f"s:{session.key}") is None


def test_session_json_round_trips() -> None:
    session = Session(
        key="a" * 64,
        user_id=3,
        created_at=1.0,
        last_seen_at=2.0,
        absolute_expires_at=100.0,
        idle_timeout=10,
        csrf_secret="c" * 43,
        username="ann",
        roles=("admin", "user"),
        remember=True,
        kind="api",
        ip="2001:db8::1",
        user_agent="UA",
    )
    assert Session.from_json(session.to_json()) == session
    assert session.idle_expires_at == 12.0
    assert session.expires_at == 12.0


# ---- the same core behaviours on memory and SQLite -----------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
async def any_manager(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[SessionManager]:
    if request.param == "memory":
        yield SessionManager(MemoryStore(namespace="sessions", clock=clock), POLICY, clock)
        return
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}")
    await create_store_tables(engine)
    try:
        yield SessionManager(SQLStore(engine, namespace="sessions", clock=clock), POLICY, clock)
    finally:
        await engine.dispose()


class TestOnEachStore:
    async def test_create_load_end(self, any_manager: SessionManager) -> None:
        raw_id, session = await any_manager.create(1, username="ann", roles=["r"])
        assert await any_manager.load(raw_id) == session
        assert await any_manager.end(session.key) is True
        assert await any_manager.load(raw_id) is None

    async def test_idle_timeout(self, any_manager: SessionManager, clock: FakeClock) -> None:
        raw_id, _ = await any_manager.create(1)
        clock.advance(IDLE - 1)
        loaded = await any_manager.load(raw_id)
        assert loaded is not None
        await any_manager.touch(loaded)
        clock.advance(IDLE - 1)
        assert await any_manager.load(raw_id) is not None
        clock.advance(IDLE)
        assert await any_manager.load(raw_id) is None

    async def test_touch_after_end_does_not_resurrect(
        self, any_manager: SessionManager, clock: FakeClock
    ) -> None:
        raw_id, session = await any_manager.create(1)
        clock.advance(TOUCH + 1)
        loaded = await any_manager.load(raw_id)
        assert loaded is not None
        await any_manager.end(session.key)
        await any_manager.touch(loaded)
        await any_manager.update(loaded, roles=("admin",))
        assert await any_manager.load(raw_id) is None

    async def test_rotate(self, any_manager: SessionManager) -> None:
        old_id, old = await any_manager.create(1)
        rotated = await any_manager.rotate(old)
        assert rotated is not None
        new_id, new = rotated
        assert await any_manager.load(old_id) is None
        assert await any_manager.load(new_id) == new
        assert await any_manager.rotate(old) is None

    async def test_lists_and_end_all(self, any_manager: SessionManager, clock: FakeClock) -> None:
        _, a = await any_manager.create(1)
        clock.advance(1)
        _, b = await any_manager.create(1)
        clock.advance(1)
        _, c = await any_manager.create(2)
        assert [s.key for s in await any_manager.list_for_user(1)] == [b.key, a.key]
        assert [s.key for s in await any_manager.list_all()] == [c.key, b.key, a.key]
        assert await any_manager.end_all_for_user(1, keep=b.key) == [a.key]
        assert [s.key for s in await any_manager.list_all()] == [c.key, b.key]

    async def test_update_user(self, any_manager: SessionManager) -> None:
        raw_id, _ = await any_manager.create(1, username="a", roles=["admin"])
        assert await any_manager.update_user(1, username="b", roles=[]) == 1
        loaded = await any_manager.load(raw_id)
        assert loaded is not None
        assert (loaded.username, loaded.roles) == ("b", ())

    async def test_corrupted_record_is_absent(self, any_manager: SessionManager) -> None:
        raw_id, session = await any_manager.create(1)
        await any_manager.store.set(f"s:{session.key}", b"\x00garbage\xff")
        assert await any_manager.load(raw_id) is None
