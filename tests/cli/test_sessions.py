"""``bastion sessions ...``: list, revoke, revoke-all."""

from __future__ import annotations

import secrets

import pytest

from bastion.sessions import session_key
from tests.cli.conftest import (
    SESSIONS_HEADER,
    Cli,
    Library,
    assert_handled_error,
    assert_ok,
    table,
)

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _rows(stdout: str) -> dict[str, list[str]]:
    """``sessions list`` rows by session id."""
    return {row[0]: row for row in table(stdout, SESSIONS_HEADER)}


def test_list_shows_every_live_session_with_its_user_address_and_device(
    cli: Cli, library: Library
) -> None:
    alice = library.add_user("alice")
    bob = library.add_user("bob")
    a1 = library.add_session(alice, ip="203.0.113.7", user_agent=FIREFOX)
    a2 = library.add_session(alice)
    b1 = library.add_session(bob)

    outcome = cli.invoke("sessions", "list")

    assert_ok(outcome)
    rows = _rows(outcome.stdout)
    assert set(rows) == {a1, a2, b1}
    assert rows[a1][1:5] == ["alice", "browser", "203.0.113.7", "Firefox 128 on Linux"]
    assert rows[a2][1] == "alice"
    assert rows[a2][3] == "-"
    assert rows[b1][1] == "bob"
    assert all(len(row) == 7 for row in rows.values())


def test_list_for_one_user_shows_only_theirs(cli: Cli, library: Library) -> None:
    alice = library.add_user("alice")
    bob = library.add_user("bob")
    a1 = library.add_session(alice)
    a2 = library.add_session(alice)
    library.add_session(bob)

    outcome = cli.invoke("sessions", "list", "--user", "Alice")

    assert_ok(outcome)
    assert set(_rows(outcome.stdout)) == {a1, a2}


def test_list_with_no_sessions_prints_only_the_header(cli: Cli, library: Library) -> None:
    library.add_user("alice")

    outcome = cli.invoke("sessions", "list")

    assert_ok(outcome)
    assert _rows(outcome.stdout) == {}


def test_revoke_ends_only_that_session_and_a_second_revoke_fails(
    cli: Cli, library: Library
) -> None:
    alice = library.add_user("alice")
    bob = library.add_user("bob")
    a1 = library.add_session(alice)
    a2 = library.add_session(alice)
    b1 = library.add_session(bob)

    first = cli.invoke("sessions", "revoke", a1)
    again = cli.invoke("sessions", "revoke", a1)

    assert_ok(first)
    assert "ended" in first.stdout
    assert library.live_sessions(alice) == {a2}
    assert library.live_sessions(bob) == {b1}
    assert_handled_error(again, "no such session")


@pytest.mark.parametrize(
    "session_id",
    [session_key(secrets.token_urlsafe(32)), "not-a-session-id", ""],
    ids=["well-formed-but-unknown", "malformed", "empty"],
)
def test_revoke_of_an_unknown_id_fails_with_one_line(
    cli: Cli, library: Library, session_id: str
) -> None:
    alice = library.add_user("alice")
    session = library.add_session(alice)

    outcome = cli.invoke("sessions", "revoke", session_id)

    assert_handled_error(outcome, "no such session")
    assert library.live_sessions(alice) == {session}


def test_revoke_all_ends_every_session_of_that_user_only(cli: Cli, library: Library) -> None:
    alice = library.add_user("alice")
    bob = library.add_user("bob")
    library.add_session(alice)
    library.add_session(alice, user_agent=FIREFOX)
    b1 = library.add_session(bob)

    outcome = cli.invoke("sessions", "revoke-all", "alice")

    assert_ok(outcome)
    assert "2 session(s) of alice ended" in outcome.stdout
    assert library.live_sessions(alice) == set()
    assert library.live_sessions(bob) == {b1}
    assert set(_rows(cli.invoke("sessions", "list").stdout)) == {b1}
