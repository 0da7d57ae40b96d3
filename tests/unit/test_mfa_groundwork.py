"""The second factors' groundwork: SessionManager.reauthenticated, the session's
enrolment flag, and bastion.mfa.methods (with_mfa, describe_methods)."""

from __future__ import annotations

import json

import pytest

from bastion.clock import FakeClock
from bastion.mfa.methods import (
    MULTI_FACTOR,
    OTP,
    PASSKEY,
    PASSWORD,
    RECOVERY_CODE,
    USER_PRESENCE_VERIFIED,
    describe_methods,
    with_mfa,
)
from bastion.mfa.policy import second_factor_required
from bastion.sessions import Session, SessionManager
from bastion.stores.memory import MemoryStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def manager(clock: FakeClock) -> SessionManager:
    return SessionManager(MemoryStore(clock=clock), clock=clock)


async def test_reauthentication_restarts_the_window_and_adds_the_methods(
    manager: SessionManager, clock: FakeClock
) -> None:
    _, session = await manager.create(1, amr=(PASSWORD,))
    assert session.auth_time == clock.now
    clock.advance(700)
    renewed = await manager.reauthenticated(session, (OTP, PASSWORD))
    assert renewed.auth_time == clock.now
    assert renewed.amr == (PASSWORD, OTP)  # each method once, in the order proved
    # Written: the store holds the renewed record, under the same id.
    stored = await manager.get(session.key)
    assert stored is not None
    assert (stored.auth_time, stored.amr) == (clock.now, (PASSWORD, OTP))


async def test_reauthenticating_an_ended_session_brings_nothing_back(
    manager: SessionManager,
) -> None:
    _, session = await manager.create(1)
    await manager.end(session.key)
    await manager.reauthenticated(session, (PASSWORD,))
    assert await manager.get(session.key) is None


async def test_a_session_record_without_the_enrolment_flag_reads_as_a_full_session(
    manager: SessionManager,
) -> None:
    _, session = await manager.create(1)
    fields = json.loads(session.to_json())
    del fields["mfa_enrolment"]
    assert Session.from_json(json.dumps(fields).encode()).mfa_enrolment is False


async def test_an_enrolment_flag_that_is_not_a_boolean_is_refused(
    manager: SessionManager,
) -> None:
    _, session = await manager.create(1, mfa_enrolment=True)
    fields = json.loads(session.to_json())
    assert fields["mfa_enrolment"] is True
    fields["mfa_enrolment"] = "yes"
    with pytest.raises(ValueError, match="flag"):
        Session.from_json(json.dumps(fields).encode())


async def test_rotation_can_clear_the_enrolment_flag_under_a_new_id(
    manager: SessionManager,
) -> None:
    _, session = await manager.create(1, mfa_enrolment=True)
    rotated = await manager.rotate(session, mfa_enrolment=False, amr=with_mfa((PASSWORD, OTP)))
    assert rotated is not None
    _, renewed = rotated
    assert renewed.key != session.key
    assert renewed.csrf_secret != session.csrf_secret
    assert (renewed.mfa_enrolment, renewed.amr) == (False, (PASSWORD, OTP, MULTI_FACTOR))
    assert await manager.get(session.key) is None


def test_two_factors_are_multi_factor() -> None:
    assert with_mfa((PASSWORD, OTP)) == (PASSWORD, OTP, MULTI_FACTOR)
    assert with_mfa((PASSWORD, RECOVERY_CODE)) == (PASSWORD, RECOVERY_CODE, MULTI_FACTOR)
    assert with_mfa((PASSWORD, PASSKEY, USER_PRESENCE_VERIFIED))[-1] == MULTI_FACTOR


def test_one_factor_is_not_multi_factor_however_often_it_is_named() -> None:
    assert with_mfa((PASSWORD,)) == (PASSWORD,)
    assert with_mfa((PASSWORD, PASSWORD)) == (PASSWORD,)
    # The user-verification flag is no factor of its own.
    assert with_mfa((PASSKEY, USER_PRESENCE_VERIFIED)) == (PASSKEY, USER_PRESENCE_VERIFIED)
    assert with_mfa(()) == ()


def test_mfa_is_never_added_twice() -> None:
    assert with_mfa((PASSWORD, OTP, MULTI_FACTOR)) == (PASSWORD, OTP, MULTI_FACTOR)


def test_methods_are_described_for_people() -> None:
    assert describe_methods((PASSWORD, OTP, MULTI_FACTOR)) == "password + authenticator code"
    assert describe_methods((PASSKEY, USER_PRESENCE_VERIFIED)) == "passkey"
    assert describe_methods((PASSWORD, RECOVERY_CODE)) == "password + recovery code"
    assert describe_methods(("swk", "unknown")) == ""
    assert describe_methods(()) == ""


def test_the_policy_names_who_must_have_a_second_factor() -> None:
    assert not second_factor_required("optional", ["admin"])
    assert second_factor_required("admins", ["admin", "staff"])
    assert not second_factor_required("admins", ["staff"])
    assert second_factor_required("required", [])
