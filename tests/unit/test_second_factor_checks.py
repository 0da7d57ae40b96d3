"""Authenticator.check_second_factor and the password step of a user with a second factor:
one back-off per account across both steps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bastion.audit import AuditTrail
from bastion.auth import Authenticator, SecondFactorRequired
from bastion.clock import FakeClock
from bastion.db import create_engine
from bastion.exceptions import AuthenticationFailed, RateLimited
from bastion.hooks import Hooks, SignInFailed
from bastion.migrate import upgrade
from bastion.passwords import Passwords
from bastion.ratelimit import LoginThrottle
from bastion.stores.memory import MemoryStore
from bastion.users.repository import UserRecord, UserRepository

PASSWORD = "correct horse battery"


@dataclass
class World:
    users: UserRepository
    throttle: LoginThrottle
    authenticator: Authenticator
    alice: UserRecord
    failures: list[SignInFailed]
    with_factor: set[int]


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"
    await upgrade(url)
    engine = create_engine(url)
    users = UserRepository(engine)
    passwords = Passwords()
    throttle = LoginThrottle(MemoryStore(clock=FakeClock()), max_failures=3, max_backoff=60)
    failures: list[SignInFailed] = []

    async def on_failed(event: SignInFailed) -> None:
        failures.append(event)

    with_factor: set[int] = set()

    async def has_second_factor(user_id: int) -> bool:
        return user_id in with_factor

    authenticator = Authenticator(
        users,
        passwords,
        AuditTrail(users),
        limiter=throttle,
        hooks=Hooks(on_sign_in_failed=on_failed),
        has_second_factor=has_second_factor,
    )
    alice = await users.create_user("alice", await passwords.hash_async(PASSWORD))
    with_factor.add(alice.id)
    try:
        yield World(users, throttle, authenticator, alice, failures, with_factor)
    finally:
        await engine.dispose()


async def right(user: UserRecord) -> bool:
    return True


async def wrong(user: UserRecord) -> bool:
    return False


async def sign_in(world: World) -> None:
    await world.authenticator.authenticate(
        "alice", PASSWORD, ip="198.51.100.1", user_agent=None, channel="web"
    )


async def test_a_right_password_of_a_user_with_a_second_factor_is_not_a_sign_in(
    world: World,
) -> None:
    with pytest.raises(SecondFactorRequired) as raised:
        await sign_in(world)
    assert raised.value.user.id == world.alice.id
    # Counted until the second factor is proved, and no sign-in recorded yet.
    assert await world.throttle.failures("alice") == 1
    assert (await world.users.get_by_id(world.alice.id)).last_login_at is None  # type: ignore[union-attr]


async def test_a_user_without_a_second_factor_signs_in_with_the_password(world: World) -> None:
    world.with_factor.clear()
    await sign_in(world)
    assert await world.throttle.failures("alice") == 0


async def test_a_wrong_code_is_audited_reported_and_counted(world: World) -> None:
    with pytest.raises(AuthenticationFailed):
        await world.authenticator.check_second_factor(
            world.alice.id, wrong, method="totp", ip="198.51.100.1", user_agent="ua", channel="web"
        )
    assert await world.throttle.failures("alice") == 1
    [event] = await world.users.list_audit(limit=1)
    assert event.event == "mfa.failure"
    assert event.detail == {"method": "totp", "channel": "web", "reason": "code"}
    [failure] = world.failures
    assert (failure.method, failure.reason, failure.user_id) == ("totp", "code", world.alice.id)


async def test_a_right_code_clears_the_back_off_and_records_the_sign_in(world: World) -> None:
    with pytest.raises(SecondFactorRequired):
        await sign_in(world)
    user = await world.authenticator.check_second_factor(
        world.alice.id, right, method="totp", ip="198.51.100.1", user_agent=None, channel="web"
    )
    assert user.id == world.alice.id
    assert await world.throttle.failures("alice") == 0
    assert (await world.users.get_by_id(world.alice.id)).last_login_at is not None  # type: ignore[union-attr]


async def test_signing_in_again_with_the_password_does_not_reset_the_codes_back_off(
    world: World,
) -> None:
    # Someone who knows the password guesses a code, then signs in again to guess more.
    with pytest.raises(SecondFactorRequired):
        await sign_in(world)
    with pytest.raises(AuthenticationFailed):
        await world.authenticator.check_second_factor(
            world.alice.id, wrong, method="totp", ip=None, user_agent=None, channel="web"
        )
    with pytest.raises(SecondFactorRequired):
        await sign_in(world)
    assert await world.throttle.failures("alice") == 3
    # The account is in back-off: even a right code waits.
    with pytest.raises(RateLimited):
        await world.authenticator.check_second_factor(
            world.alice.id, right, method="totp", ip=None, user_agent=None, channel="web"
        )


async def test_a_disabled_account_fails_without_running_the_check(world: World) -> None:
    await world.users.set_active(world.alice.id, False)
    ran: list[int] = []

    async def spends(user: UserRecord) -> bool:
        ran.append(user.id)
        return True

    with pytest.raises(AuthenticationFailed):
        await world.authenticator.check_second_factor(
            world.alice.id, spends, method="recovery_code", ip=None, user_agent=None
        )
    assert ran == []


async def test_a_re_check_names_its_purpose_and_reaches_no_sign_in_hook(world: World) -> None:
    with pytest.raises(AuthenticationFailed):
        await world.authenticator.check_second_factor(
            world.alice.id,
            wrong,
            method="recovery_code",
            ip=None,
            user_agent=None,
            purpose="re-authentication",
        )
    [event] = await world.users.list_audit(limit=1)
    assert event.detail == {
        "method": "recovery_code",
        "purpose": "re-authentication",
        "reason": "code",
    }
    assert world.failures == []
