"""``bastion roles ...`` and the refusal to grant a role that is not defined."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli, Library, assert_handled_error, assert_ok, table

ROLES_HEADER = ("NAME", "USERS", "DESCRIPTION")


def roles(cli: Cli) -> list[list[str]]:
    outcome = cli.invoke("roles", "list")
    assert_ok(outcome)
    return table(outcome.stdout, ROLES_HEADER)


def test_a_fresh_database_defines_only_the_admin_role(cli: Cli) -> None:
    assert roles(cli) == [["admin", "0", "-"]]


def test_roles_are_created_listed_with_their_holders_and_deleted(
    cli: Cli, library: Library
) -> None:
    created = cli.script("roles", "create", "staff")
    assert_ok(created)
    assert created.stdout.strip() == "created role staff"
    assert_ok(cli.invoke("roles", "create", "on-call_2"))
    library.add_user("alice", roles=("staff",))

    assert roles(cli) == [["admin", "0", "-"], ["on-call_2", "0", "-"], ["staff", "1", "-"]]
    deleted = cli.invoke("roles", "delete", "on-call_2")
    assert_ok(deleted)
    assert deleted.stdout.strip() == "deleted role on-call_2"
    assert [row[0] for row in roles(cli)] == ["admin", "staff"]


def test_a_role_is_listed_with_its_description(cli: Cli) -> None:
    assert_ok(cli.invoke("roles", "create", "staff", "--description", "Sees the reports"))
    assert roles(cli) == [["admin", "0", "-"], ["staff", "0", "Sees the reports"]]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("Staff", "lowercase letters", id="capital"),
        pytest.param("ops.team", "lowercase letters", id="dot"),
        pytest.param("_x", "starts with a letter or digit", id="leading-underscore"),
        pytest.param("r" * 65, "longer than 64", id="too-long"),
        pytest.param("admin", "already exists", id="admin-again"),
    ],
)
def test_create_refuses_a_bad_or_taken_name(cli: Cli, name: str, message: str) -> None:
    assert_handled_error(cli.invoke("roles", "create", name), message)
    assert roles(cli) == [["admin", "0", "-"]]


def test_delete_refuses_a_role_users_hold_unless_forced(cli: Cli, library: Library) -> None:
    assert_ok(cli.invoke("roles", "create", "staff"))
    alice = library.add_user("alice", roles=("staff",))
    session = library.add_session(alice)

    refused = cli.invoke("roles", "delete", "staff")
    assert_handled_error(refused, "The role 'staff' is held by 1 user. --force takes it from them")
    assert library.user("alice").roles == {"staff"}  # type: ignore[union-attr]
    assert library.live_sessions(alice) == {session}

    forced = cli.script("roles", "delete", "staff", "--force")
    assert_ok(forced)
    assert forced.stdout.strip() == "deleted role staff; taken from 1 user(s), their sessions ended"
    assert library.user("alice").roles == frozenset()  # type: ignore[union-attr]
    assert library.live_sessions(alice) == set()
    assert [row[0] for row in roles(cli)] == ["admin"]
    events = library.run(lambda services: services.users.list_audit(0, 10))
    assert [e.event for e in events][:2] == ["role.deleted", "user.roles_changed"]


def test_the_admin_role_cannot_be_deleted_even_by_force(cli: Cli, library: Library) -> None:
    library.add_user("root", roles=("admin",))
    assert_handled_error(cli.invoke("roles", "delete", "admin", "--force"), "built-in")
    assert library.user("root").roles == {"admin"}  # type: ignore[union-attr]
    assert roles(cli) == [["admin", "1", "-"]]


def test_deleting_an_undefined_role_is_refused(cli: Cli) -> None:
    assert_handled_error(cli.invoke("roles", "delete", "ghost"), "'ghost' is not defined")


def test_forced_delete_refuses_a_process_local_session_store(cli: Cli, library: Library) -> None:
    assert_ok(cli.invoke("roles", "create", "staff"))
    library.add_user("alice", roles=("staff",))
    env = {"BASTION_SESSION_STORE": "memory"}
    outcome = cli.invoke("roles", "delete", "staff", "--force", env=env)
    assert_handled_error(outcome, "server's own memory")
    assert library.user("alice").roles == {"staff"}  # type: ignore[union-attr]


def test_users_create_refuses_an_undefined_role_before_asking_for_a_password(
    cli: Cli, library: Library
) -> None:
    outcome = cli.invoke("users", "create", "alice", "--role", "ops")  # no password typed
    line = assert_handled_error(outcome, "role 'ops' is not defined")
    assert "bastion roles create ops" in line
    assert "Password" not in outcome.stdout
    assert library.usernames() == []


def test_users_create_grants_a_defined_role(cli: Cli, library: Library) -> None:
    assert_ok(cli.invoke("roles", "create", "ops"))
    outcome = cli.invoke(
        "users", "create", "alice", "--role", "ops", "--password-stdin", input="a-fine-password-1\n"
    )
    assert_ok(outcome)
    assert library.user("alice").roles == {"ops"}  # type: ignore[union-attr]
