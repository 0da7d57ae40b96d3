"""The re-authentication window (bastion.mfa.stepup) on an injected clock."""

from __future__ import annotations

from dataclasses import replace

from bastion.clock import FakeClock
from bastion.mfa.stepup import ReauthWindow
from bastion.sessions import Session
from tests.unit.test_layers import frameworks_asked_for

WINDOW = 600


def signed_in_at(when: float) -> Session:
    return Session(
        key="0" * 64,
        user_id=1,
        created_at=when,
        last_seen_at=when,
        absolute_expires_at=when + 43_200,
        idle_timeout=1800,
        csrf_secret="secret",
        amr=("pwd",),
        auth_time=when,
    )


def test_a_fresh_sign_in_is_inside_the_window() -> None:
    clock = FakeClock()
    window = ReauthWindow(WINDOW, clock)
    session = signed_in_at(clock())
    assert window.is_open(session)
    assert window.remaining(session) == WINDOW


def test_the_window_closes_exactly_at_its_length() -> None:
    clock = FakeClock()
    window = ReauthWindow(WINDOW, clock)
    session = signed_in_at(clock())
    clock.advance(WINDOW - 0.5)
    assert window.is_open(session)
    assert window.remaining(session) == 1
    clock.advance(0.5)
    assert not window.is_open(session)
    assert window.remaining(session) == 0
    clock.advance(3600)
    assert window.remaining(session) == 0


def test_a_reauthentication_restarts_the_window_whatever_the_sign_in_time() -> None:
    clock = FakeClock()
    window = ReauthWindow(WINDOW, clock)
    session = signed_in_at(clock())
    clock.advance(10_000)
    assert not window.is_open(session)
    assert window.is_open(replace(session, auth_time=clock()))


def test_an_auth_time_slightly_ahead_of_this_clock_counts_as_now() -> None:
    clock = FakeClock()
    window = ReauthWindow(WINDOW, clock)
    session = signed_in_at(clock() + 2)  # another process's clock, a little ahead
    assert window.is_open(session)
    assert window.remaining(session) == WINDOW


def test_stepup_is_a_core_module() -> None:
    assert frameworks_asked_for("mfa.stepup") == {"mfa.stepup": []}
