"""Link tokens of bastion.recovery: bound to the account's state, expiring, used once."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bastion.clock import FakeClock
from bastion.recovery import (
    InvalidLink,
    LinkKind,
    LinkTokens,
    TokenPathFilter,
    redact_token_paths,
)
from bastion.stores.memory import MemoryStore
from bastion.users.repository import UserRecord

SECRET = b"s" * 32
TTL = 3600
WHEN = datetime(2025, 1, 1, tzinfo=UTC)
ALICE = UserRecord(
    id=7,
    username="alice",
    email="Alice@Example.com",
    password_hash="$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
    is_active=True,
    created_at=WHEN,
    last_login_at=None,
    password_changed_at=WHEN,
    roles=frozenset(),
)


def tokens(
    clock: FakeClock, secret: bytes = SECRET, fallbacks: list[bytes] | None = None
) -> LinkTokens:
    return LinkTokens(secret, fallbacks or [], MemoryStore(clock=clock), ttl=TTL, clock=clock)


def accepts(maker: LinkTokens, token: str, user: UserRecord, kind: LinkKind = "reset") -> bool:
    try:
        maker.check(token, maker.read(token, (kind,)), user)
    except InvalidLink:
        return False
    return True


@pytest.mark.parametrize("kind", ["reset", "verify"])
def test_a_token_is_accepted_for_the_account_as_it_was_made(kind: LinkKind) -> None:
    maker = tokens(FakeClock())
    token = maker.make(kind, ALICE)
    assert accepts(maker, token, ALICE, kind)
    assert len(token) < 100
    assert token.replace(".", "").replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize(
    ("change", "kinds_it_kills"),
    [
        ({"password_hash": "$argon2id$another"}, ("reset", "verify", "change")),
        ({"email": "alice@elsewhere.example"}, ("reset", "verify", "change")),
        ({"email_verified_at": WHEN}, ("reset", "verify", "change")),
        ({"is_active": False}, ("reset", "verify", "change")),
        ({"last_login_at": WHEN}, ("reset",)),
    ],
)
def test_a_change_of_the_account_kills_its_links(
    change: dict[str, object], kinds_it_kills: tuple[LinkKind, ...]
) -> None:
    maker = tokens(FakeClock())
    changed = replace(ALICE, **change)  # type: ignore[arg-type]
    for kind in ("reset", "verify", "change"):
        token = maker.make(kind, ALICE, new_email="new@example.com" if kind == "change" else None)
        assert accepts(maker, token, changed, kind) is (kind not in kinds_it_kills), (kind, change)


def test_a_token_of_one_kind_or_user_is_refused_as_another() -> None:
    maker = tokens(FakeClock())
    reset = maker.make("reset", ALICE)
    with pytest.raises(InvalidLink):
        maker.read(reset, ("verify", "change"))
    assert not accepts(maker, reset, replace(ALICE, id=8))


def test_a_token_made_with_another_secret_or_tampered_with_is_refused() -> None:
    clock = FakeClock()
    token = tokens(clock, b"k" * 32).make("reset", ALICE)
    assert not accepts(tokens(clock), token, ALICE)
    payload, mac = tokens(clock).make("reset", ALICE).split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for forged in (f"{payload}.{flipped}", f"{payload}x.{mac}", f"{payload}", "", "a.b", "é.é"):
        assert not accepts(tokens(clock), forged, ALICE), forged


def test_a_token_made_before_the_secret_was_rotated_still_works() -> None:
    clock = FakeClock()
    old = b"o" * 32
    token = tokens(clock, old).make("reset", ALICE)
    assert accepts(tokens(clock, SECRET, [old]), token, ALICE)


def test_a_token_expires_after_its_lifetime() -> None:
    clock = FakeClock()
    maker = tokens(clock)
    token = maker.make("reset", ALICE)
    clock.advance(TTL)
    assert accepts(maker, token, ALICE)
    clock.advance(1)
    with pytest.raises(InvalidLink) as refused:
        maker.read(token, ("reset",))
    assert refused.value.reason == "expired"


def test_a_token_from_the_future_beyond_the_clock_leeway_is_refused() -> None:
    clock = FakeClock()
    ahead = FakeClock(clock() + 3600)
    token = LinkTokens(SECRET, [], MemoryStore(clock=clock), ttl=TTL, clock=ahead).make(
        "reset", ALICE
    )
    with pytest.raises(InvalidLink) as refused:
        tokens(clock).read(token, ("reset",))
    assert refused.value.reason == "issued in the future"


async def test_of_many_concurrent_uses_exactly_one_spends_the_token() -> None:
    maker = tokens(FakeClock())
    token = maker.make("reset", ALICE)
    claims = maker.read(token, ("reset",))

    async def use() -> bool:
        try:
            await maker.spend(token, claims)
        except InvalidLink:
            return False
        return True

    outcomes = await asyncio.gather(*(use() for _ in range(20)))
    assert outcomes.count(True) == 1
    assert await maker.is_spent(token)
    await maker.unspend(token)
    assert await use()


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/password/reset/abc.def", "/password/reset/[token]"),
        ("/password/reset/abc.def?x=1", "/password/reset/[token]?x=1"),
        ("/email/verify/abc.def", "/email/verify/[token]"),
        ("/email/verify/abc.def/more", "/email/verify/[token]/more"),
        ("/password/reset", "/password/reset"),
        ("/password/reset/", "/password/reset/"),
        ("/login?next=/dashboard", "/login?next=/dashboard"),
    ],
)
def test_access_logs_show_no_token(path: str, shown: str) -> None:
    assert redact_token_paths(path) == shown


def test_the_filter_hides_tokens_in_uvicorns_access_records() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/password/reset/secret.token", "1.1", 303),
        None,
    )
    assert TokenPathFilter().filter(record)
    assert "secret.token" not in record.getMessage()
    assert "/password/reset/[token]" in record.getMessage()
