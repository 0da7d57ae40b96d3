"""bastion.mfa.pending: the state between the password and the second factor."""

from __future__ import annotations

import asyncio

import pytest

from bastion.clock import FakeClock
from bastion.mfa.pending import MAX_WRONG_CODES, PENDING_TTL, PendingSignIns
from bastion.stores.memory import MemoryStore

SECRET = b"k" * 32
BROWSER = "csrf-secret-of-this-browser"
OTHER_BROWSER = "csrf-secret-of-another-browser"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pending(clock: FakeClock) -> PendingSignIns:
    return PendingSignIns(MemoryStore(clock=clock), SECRET, clock=clock)


async def start_web(pending: PendingSignIns) -> str:
    return await pending.start(
        7, channel="web", methods=("pwd",), csrf_secret=BROWSER, remember=True, next="/notes"
    )


async def test_a_browser_finds_its_pending_sign_in_with_what_it_carries(
    pending: PendingSignIns,
) -> None:
    token = await start_web(pending)
    found = await pending.peek(token, channel="web", csrf_secret=BROWSER)
    assert found is not None
    assert (found.user_id, found.methods, found.remember, found.next) == (
        7,
        ("pwd",),
        True,
        "/notes",
    )
    # The record keeps a hash of the browser's secret, never the secret.
    assert BROWSER not in repr(found)


async def test_another_browser_holding_the_token_gets_nothing_and_ends_nothing(
    pending: PendingSignIns,
) -> None:
    token = await start_web(pending)
    assert await pending.peek(token, channel="web", csrf_secret=OTHER_BROWSER) is None
    assert await pending.claim(token, channel="web", csrf_secret=OTHER_BROWSER) is None
    assert await pending.claim(token, channel="web", csrf_secret=None) is None
    assert await pending.claim(token, channel="web", csrf_secret=BROWSER) is not None


async def test_a_pending_sign_in_is_claimed_once(pending: PendingSignIns) -> None:
    token = await start_web(pending)
    assert await pending.claim(token, channel="web", csrf_secret=BROWSER) is not None
    assert await pending.claim(token, channel="web", csrf_secret=BROWSER) is None
    assert await pending.peek(token, channel="web", csrf_secret=BROWSER) is None


async def test_of_concurrent_claims_exactly_one_holds_the_state(pending: PendingSignIns) -> None:
    token = await start_web(pending)
    claims = await asyncio.gather(
        *(pending.claim(token, channel="web", csrf_secret=BROWSER) for _ in range(20))
    )
    assert sum(claim is not None for claim in claims) == 1


async def test_it_lasts_five_minutes(pending: PendingSignIns, clock: FakeClock) -> None:
    token = await start_web(pending)
    clock.advance(PENDING_TTL - 1)
    assert await pending.peek(token, channel="web", csrf_secret=BROWSER) is not None
    clock.advance(2)
    assert await pending.claim(token, channel="web", csrf_secret=BROWSER) is None


async def test_a_wrong_code_puts_it_back_until_the_wrong_codes_run_out(
    pending: PendingSignIns,
) -> None:
    token = await start_web(pending)
    for _ in range(MAX_WRONG_CODES - 1):
        claimed = await pending.claim(token, channel="web", csrf_secret=BROWSER)
        assert claimed is not None
        assert await pending.release(token, claimed, wrong_code=True)
    claimed = await pending.claim(token, channel="web", csrf_secret=BROWSER)
    assert claimed is not None
    assert claimed.wrong_codes == MAX_WRONG_CODES - 1
    assert not await pending.release(token, claimed, wrong_code=True)
    assert await pending.peek(token, channel="web", csrf_secret=BROWSER) is None


async def test_a_state_put_back_keeps_its_expiry(pending: PendingSignIns, clock: FakeClock) -> None:
    token = await start_web(pending)
    clock.advance(PENDING_TTL - 10)
    claimed = await pending.claim(token, channel="web", csrf_secret=BROWSER)
    assert claimed is not None
    assert await pending.release(token, claimed, wrong_code=False)
    clock.advance(11)
    assert await pending.peek(token, channel="web", csrf_secret=BROWSER) is None


async def test_a_state_is_used_only_by_its_own_channel(pending: PendingSignIns) -> None:
    web = await start_web(pending)
    api = await pending.start(7, channel="api", methods=("pwd",))
    assert await pending.claim(web, channel="api") is None
    assert await pending.claim(api, channel="web", csrf_secret=BROWSER) is None
    assert await pending.claim(api, channel="api") is not None


async def test_forged_tampered_or_foreign_tokens_are_refused(
    pending: PendingSignIns, clock: FakeClock
) -> None:
    token = await start_web(pending)
    other_key = PendingSignIns(MemoryStore(clock=clock), b"x" * 32, clock=clock)
    forged = await other_key.start(7, channel="web", methods=("pwd",), csrf_secret=BROWSER)
    for bad in (None, "", "garbage", token[:-2] + "AA", forged):
        assert await pending.claim(bad, channel="web", csrf_secret=BROWSER) is None


def test_a_browser_state_needs_the_browser_secret_and_an_api_state_none(
    pending: PendingSignIns,
) -> None:
    with pytest.raises(ValueError, match="bound"):
        asyncio.run(pending.start(7, channel="web", methods=("pwd",)))
    with pytest.raises(ValueError, match="bound"):
        asyncio.run(pending.start(7, channel="api", methods=("pwd",), csrf_secret=BROWSER))
