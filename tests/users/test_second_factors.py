"""SecondFactors (TOTP and recovery codes) on real SQLite and PostgreSQL databases, with an
injected clock: the accepted window, replays, races of one code, and key rotation."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert, select

from bastion.accounts import Accounts
from bastion.audit import AuditTrail
from bastion.clock import FakeClock, to_datetime
from bastion.exceptions import UserError
from bastion.mfa import totp
from bastion.mfa.models import Passkey, RecoveryCode, TOTPFactor
from bastion.mfa.repository import SecondFactorRepository
from bastion.mfa.service import (
    FactorSummary,
    InvalidCode,
    RemovedFactors,
    SecondFactors,
    TOTPAlreadyEnabled,
)
from bastion.passwords import Passwords
from bastion.sessions import SessionManager
from bastion.stores.memory import MemoryStore
from bastion.users.repository import UserRecord, UserRepository

HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
SECRET = b"current-secret-" * 3
OLD_SECRET = b"previous-secret" * 3


def factors_for(
    repo: UserRepository,
    clock: FakeClock,
    secret: bytes = SECRET,
    fallbacks: tuple[bytes, ...] = (),
    sessions: SessionManager | None = None,
) -> SecondFactors:
    sessions = sessions or SessionManager(MemoryStore(clock=clock), clock=clock)
    accounts = Accounts(repo, sessions, Passwords(), AuditTrail(repo))
    return SecondFactors(
        SecondFactorRepository(repo.engine, clock=clock),
        accounts,
        secret=secret,
        fallbacks=fallbacks,
        issuer="Test Site",
        clock=clock,
    )


@pytest.fixture
def factors(repo: UserRepository, clock: FakeClock) -> SecondFactors:
    return factors_for(repo, clock)


@pytest.fixture
async def alice(repo: UserRepository) -> UserRecord:
    return await repo.create_user("alice", HASH)


def now_code(secret: str, clock: FakeClock, offset: int = 0) -> str:
    return totp.code_at(secret, totp.current_step(clock) + offset)


async def enrolled(
    factors: SecondFactors, user: UserRecord, clock: FakeClock
) -> tuple[str, list[str]]:
    """TOTP turned on for ``user``: (its secret, its recovery codes); the clock moves on
    one step, so the enrolment's code is in the past."""
    enrolment = await factors.begin_totp(user.id, user.username)
    codes = await factors.confirm_totp(user.id, now_code(enrolment.secret, clock))
    clock.advance(totp.STEP_SECONDS)
    return enrolment.secret, codes


async def events(repo: UserRepository, user: UserRecord) -> list[str]:
    return [e.event for e in reversed(await repo.list_audit(user_id=user.id))]


# -- enrolment ------------------------------------------------------------------------------


async def test_totp_is_off_until_a_correct_code_confirms_it(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock
) -> None:
    enrolment = await factors.begin_totp(alice.id, "alice")

    assert (await factors.summary(alice.id)).totp is False
    assert await factors.verify_totp(alice.id, now_code(enrolment.secret, clock)) is False
    with pytest.raises(InvalidCode):
        await factors.confirm_totp(alice.id, now_code(enrolment.secret, clock, 5))

    codes = await factors.confirm_totp(alice.id, now_code(enrolment.secret, clock))

    summary = await factors.summary(alice.id)
    assert summary.totp is True
    assert summary.has_any is True
    assert summary.recovery_codes_left == len(codes) == 10
    assert "mfa.totp.enabled" in await events(factors.accounts.users, alice)


async def test_secret_is_stored_encrypted(
    factors: SecondFactors, alice: UserRecord, repo: UserRepository
) -> None:
    enrolment = await factors.begin_totp(alice.id, "alice")

    async with repo.engine.connect() as connection:
        stored = await connection.scalar(select(TOTPFactor.secret))

    assert stored is not None
    assert enrolment.secret not in stored
    assert stored.startswith("v1.")


async def test_recovery_codes_are_stored_as_keyed_hashes(
    factors: SecondFactors, alice: UserRecord, repo: UserRepository, clock: FakeClock
) -> None:
    _, codes = await enrolled(factors, alice, clock)

    async with repo.engine.connect() as connection:
        stored = set((await connection.scalars(select(RecoveryCode.code_hash))).all())

    assert stored == {factors.hasher.hash(code) for code in codes}
    assert not stored & {c.replace("-", "") for c in codes}


async def test_reloading_the_enrolment_page_replaces_the_pending_secret(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock
) -> None:
    first = await factors.begin_totp(alice.id, "alice")
    second = await factors.begin_totp(alice.id, "alice")

    assert first.secret != second.secret
    with pytest.raises(InvalidCode):
        await factors.confirm_totp(alice.id, now_code(first.secret, clock))
    assert await factors.confirm_totp(alice.id, now_code(second.secret, clock))


async def test_pending_enrolment_can_be_shown_again(
    factors: SecondFactors, alice: UserRecord
) -> None:
    started = await factors.begin_totp(alice.id, "alice")

    again = await factors.pending_totp(alice.id, "alice")

    assert again is not None
    assert again.secret == started.secret


async def test_enrolling_again_while_on_is_refused(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock
) -> None:
    secret, _ = await enrolled(factors, alice, clock)

    with pytest.raises(TOTPAlreadyEnabled):
        await factors.begin_totp(alice.id, "alice")
    assert await factors.verify_totp(alice.id, now_code(secret, clock))


async def test_enrolling_an_unknown_user_is_refused(factors: SecondFactors) -> None:
    with pytest.raises(UserError):
        await factors.begin_totp(424242, "nobody")


# -- verification: window, replay, races ----------------------------------------------------


@pytest.mark.parametrize("offset", [-1, 0, 1])
async def test_code_of_the_current_step_or_one_either_side_is_accepted(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock, offset: int
) -> None:
    secret, _ = await enrolled(factors, alice, clock)
    clock.advance(totp.STEP_SECONDS)  # the enrolment used the step two back

    assert await factors.verify_totp(alice.id, now_code(secret, clock, offset)) is True


@pytest.mark.parametrize("offset", [-2, 2])
async def test_code_two_steps_away_is_refused(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock, offset: int
) -> None:
    secret, _ = await enrolled(factors, alice, clock)
    clock.advance(10 * totp.STEP_SECONDS)

    assert await factors.verify_totp(alice.id, now_code(secret, clock, offset)) is False


async def test_a_code_is_accepted_once(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock
) -> None:
    secret, _ = await enrolled(factors, alice, clock)
    code = now_code(secret, clock)

    assert await factors.verify_totp(alice.id, code) is True
    assert await factors.verify_totp(alice.id, code) is False


async def test_after_a_code_is_used_older_steps_are_refused(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock
) -> None:
    secret, _ = await enrolled(factors, alice, clock)
    clock.advance(totp.STEP_SECONDS)

    assert await factors.verify_totp(alice.id, now_code(secret, clock, 1)) is True
    assert await factors.verify_totp(alice.id, now_code(secret, clock, 0)) is False
    assert await factors.verify_totp(alice.id, now_code(secret, clock, -1)) is False


async def test_the_enrolment_code_cannot_be_replayed(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock
) -> None:
    enrolment = await factors.begin_totp(alice.id, "alice")
    code = now_code(enrolment.secret, clock)
    await factors.confirm_totp(alice.id, code)

    assert await factors.verify_totp(alice.id, code) is False


async def test_two_concurrent_verifications_of_one_code_let_exactly_one_pass(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock
) -> None:
    secret, _ = await enrolled(factors, alice, clock)
    code = now_code(secret, clock)

    results = await asyncio.gather(*(factors.verify_totp(alice.id, code) for _ in range(4)))

    assert sorted(results) == [False, False, False, True]


async def test_codes_are_per_user(
    factors: SecondFactors, alice: UserRecord, repo: UserRepository, clock: FakeClock
) -> None:
    bob = await repo.create_user("bob", HASH)
    secret, _ = await enrolled(factors, alice, clock)
    await enrolled(factors, bob, clock)

    assert await factors.verify_totp(bob.id, now_code(secret, clock)) is False


async def test_a_secret_copied_to_another_user_does_not_work(
    factors: SecondFactors, alice: UserRecord, repo: UserRepository, clock: FakeClock
) -> None:
    bob = await repo.create_user("bob", HASH)
    secret, _ = await enrolled(factors, alice, clock)
    async with repo.engine.begin() as connection:
        sealed = await connection.scalar(
            select(TOTPFactor.secret).where(TOTPFactor.user_id == alice.id)
        )
        await connection.execute(
            insert(TOTPFactor).values(
                user_id=bob.id,
                secret=sealed,
                created_at=to_datetime(clock.now),
                confirmed_at=to_datetime(clock.now),
                last_used_step=None,
            )
        )

    assert await factors.verify_totp(bob.id, now_code(secret, clock)) is False


async def test_totp_keeps_working_after_the_secret_key_rotates(
    repo: UserRepository, alice: UserRecord, clock: FakeClock
) -> None:
    before = factors_for(repo, clock, secret=OLD_SECRET)
    secret, codes = await enrolled(before, alice, clock)

    rotated = factors_for(repo, clock, secret=SECRET, fallbacks=(OLD_SECRET,))
    assert await rotated.verify_totp(alice.id, now_code(secret, clock)) is True
    assert await rotated.use_recovery_code(alice.id, codes[0]) is True

    # The verification sealed the secret again under the new key: the old one can go.
    clock.advance(totp.STEP_SECONDS)
    without_old = factors_for(repo, clock, secret=SECRET)
    assert await without_old.verify_totp(alice.id, now_code(secret, clock)) is True


# -- recovery codes -------------------------------------------------------------------------


async def test_a_recovery_code_works_once(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock, repo: UserRepository
) -> None:
    _, codes = await enrolled(factors, alice, clock)

    assert await factors.use_recovery_code(alice.id, codes[3].upper().replace("-", " "))
    assert await factors.use_recovery_code(alice.id, codes[3]) is False

    summary = await factors.summary(alice.id)
    assert summary.recovery_codes_left == 9
    assert summary.recovery_code_used_at == to_datetime(clock.now)
    assert "mfa.recovery_code.used" in await events(repo, alice)


async def test_a_recovery_code_is_per_user(
    factors: SecondFactors, alice: UserRecord, repo: UserRepository, clock: FakeClock
) -> None:
    bob = await repo.create_user("bob", HASH)
    _, codes = await enrolled(factors, alice, clock)
    await enrolled(factors, bob, clock)

    assert await factors.use_recovery_code(bob.id, codes[0]) is False
    assert await factors.use_recovery_code(bob.id, "not a code") is False


async def test_two_concurrent_uses_of_one_recovery_code_let_exactly_one_pass(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock
) -> None:
    _, codes = await enrolled(factors, alice, clock)

    results = await asyncio.gather(
        *(factors.use_recovery_code(alice.id, codes[0]) for _ in range(4))
    )

    assert sorted(results) == [False, False, False, True]


async def test_regenerating_kills_the_old_codes(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock, repo: UserRepository
) -> None:
    _, old = await enrolled(factors, alice, clock)
    await factors.use_recovery_code(alice.id, old[0])

    new = await factors.regenerate_recovery_codes(alice.id)

    assert not set(old) & set(new)
    assert await factors.use_recovery_code(alice.id, old[1]) is False
    summary = await factors.summary(alice.id)
    assert summary.recovery_codes_left == 10
    assert summary.recovery_code_used_at is None
    assert await factors.use_recovery_code(alice.id, new[1]) is True
    assert "mfa.recovery_codes.regenerated" in await events(repo, alice)


# -- turning off and removing ---------------------------------------------------------------


async def test_disabling_totp_removes_it_and_its_recovery_codes(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock, repo: UserRepository
) -> None:
    secret, codes = await enrolled(factors, alice, clock)

    assert await factors.disable_totp(alice.id) is True

    assert await factors.summary(alice.id) == FactorSummary(
        totp=False, passkeys=0, recovery_codes_left=0
    )
    assert await factors.verify_totp(alice.id, now_code(secret, clock)) is False
    assert await factors.use_recovery_code(alice.id, codes[0]) is False
    assert await factors.disable_totp(alice.id) is False
    assert (await events(repo, alice)).count("mfa.totp.disabled") == 1


async def add_passkey(repo: UserRepository, user: UserRecord, clock: FakeClock) -> None:
    async with repo.engine.begin() as connection:
        await connection.execute(
            insert(Passkey).values(
                user_id=user.id,
                credential_id=f"cred-{user.id}",
                public_key=b"key",
                sign_count=0,
                name="laptop",
                transports=None,
                aaguid=None,
                backup_eligible=False,
                backed_up=False,
                created_at=to_datetime(clock.now),
                last_used_at=None,
            )
        )


async def test_disabling_totp_keeps_recovery_codes_while_a_passkey_remains(
    factors: SecondFactors, alice: UserRecord, clock: FakeClock, repo: UserRepository
) -> None:
    await enrolled(factors, alice, clock)
    await add_passkey(repo, alice, clock)

    await factors.disable_totp(alice.id)

    summary = await factors.summary(alice.id)
    assert (summary.totp, summary.passkeys, summary.recovery_codes_left) == (False, 1, 10)
    assert summary.has_any is True


async def test_removing_all_factors_ends_the_users_sessions_and_is_audited(
    repo: UserRepository, alice: UserRecord, clock: FakeClock
) -> None:
    sessions = SessionManager(MemoryStore(clock=clock), clock=clock)
    factors = factors_for(repo, clock, sessions=sessions)
    await enrolled(factors, alice, clock)
    await add_passkey(repo, alice, clock)
    _, session = await sessions.create(alice.id, username="alice")

    removed = await factors.remove_all(alice.id, by="cli", ip="192.0.2.1")

    assert removed == RemovedFactors(totp=True, passkeys=1, recovery_codes=10, sessions_ended=1)
    assert removed.describe() == "TOTP, 1 passkey, 10 recovery codes"
    assert await sessions.get(session.key) is None
    summary = await factors.summary(alice.id)
    assert (summary.totp, summary.passkeys, summary.recovery_codes_left) == (False, 0, 0)
    [reset] = [e for e in await repo.list_audit(user_id=alice.id) if e.event == "mfa.reset"]
    assert reset.ip == "192.0.2.1"
    assert reset.detail == {
        "by": "cli",
        "totp": True,
        "passkeys": 1,
        "recovery_codes": 10,
        "sessions_ended": 1,
    }


async def test_removing_the_factors_of_an_unknown_user_is_refused(
    factors: SecondFactors,
) -> None:
    with pytest.raises(UserError):
        await factors.remove_all(424242, by="cli")
