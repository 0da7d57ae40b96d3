"""``bastion users ...``: create, list, set-password, disable, enable, delete."""

from __future__ import annotations

import pytest

from bastion.exceptions import AuthenticationFailed, RateLimited
from bastion.ratelimit import LoginThrottle
from bastion.services import Services
from tests.cli.conftest import (
    USERS_HEADER,
    Cli,
    Library,
    assert_handled_error,
    assert_ok,
    table,
)

# ---- create ------------------------------------------------------------------------------


def test_create_with_password_stdin_takes_one_line_without_its_newline(
    cli: Cli, library: Library
) -> None:
    assert_ok(cli.invoke("roles", "create", "ops"))
    outcome = cli.script(
        "users", "create", "alice", "--email", "alice@example.org",
        "--role", "admin", "--role", "ops", "--password-stdin",
        input="secret-password-1\nthis second line is not read\n",
    )  # fmt: skip

    assert_ok(outcome)
    assert outcome.stdout.strip() == "created user alice"
    assert "secret-password-1" not in outcome.stdout + outcome.stderr
    assert library.password_matches("alice", "secret-password-1")
    assert not library.password_matches("alice", "secret-password-1\n")
    user = library.user("alice")
    assert user is not None
    assert user.email == "alice@example.org"
    assert user.roles == {"admin", "ops"}
    assert user.is_active


def test_create_refuses_a_duplicate_and_a_look_alike_name(cli: Cli, library: Library) -> None:
    library.add_user("alice", password="original-password-1")

    look_alike = cli.script(
        "users", "create", "ALICE", "--password-stdin", input="another-password-1\n"
    )
    same = cli.invoke("users", "create", "alice", "--password-stdin", input="another-password-1\n")

    assert_handled_error(look_alike, "already exists")
    assert_handled_error(same, "already exists")
    assert library.usernames() == ["alice"]
    assert library.password_matches("alice", "original-password-1")


@pytest.mark.parametrize(
    ("stdin", "env", "message"),
    [
        pytest.param("\n", {}, "The password is empty.", id="empty-line"),
        pytest.param("", {}, "The password is empty.", id="no-input"),
        pytest.param("short-7\n", {}, "at least 8 characters", id="below-default-minimum"),
        pytest.param(
            "nineteen-characters\n",
            {"BASTION_PASSWORD_MIN_LENGTH": "20"},
            "at least 20 characters",
            id="below-configured-minimum",
        ),
        pytest.param("é" * 513 + "\n", {}, "1024 bytes", id="over-1024-bytes"),
    ],
)
def test_create_refuses_a_password_that_breaks_the_policy(
    cli: Cli, library: Library, stdin: str, env: dict[str, str], message: str
) -> None:
    outcome = cli.invoke("users", "create", "alice", "--password-stdin", input=stdin, env=env)

    assert_handled_error(outcome, message)
    assert library.usernames() == []


def test_create_accepts_a_password_of_exactly_the_configured_minimum(
    cli: Cli, library: Library
) -> None:
    outcome = cli.invoke(
        "users", "create", "alice", "--password-stdin",
        input="twenty-characters-ok\n", env={"BASTION_PASSWORD_MIN_LENGTH": "20"},
    )  # fmt: skip

    assert_ok(outcome)
    assert library.password_matches("alice", "twenty-characters-ok")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["two words"], "must not contain spaces", id="name-with-space"),
        pytest.param(["alice", "--email", "not-an-address"], "e-mail address", id="bad-email"),
        pytest.param(["alice", "--role", "has space"], "role name", id="bad-role"),
    ],
)
def test_create_refuses_bad_account_details(
    cli: Cli, library: Library, args: list[str], message: str
) -> None:
    outcome = cli.invoke("users", "create", *args, "--password-stdin", input="a-fine-password-1\n")

    assert_handled_error(outcome, message)
    assert library.usernames() == []


# ---- the password prompt -----------------------------------------------------------------


def test_create_prompts_for_the_password_twice_without_echo(cli: Cli, library: Library) -> None:
    outcome = cli.invoke("users", "create", "carol", input="winter-garden-1\nwinter-garden-1\n")

    assert_ok(outcome)
    assert "Password" in outcome.stdout
    assert "Repeat for confirmation" in outcome.stdout
    assert "winter-garden-1" not in outcome.stdout + outcome.stderr
    assert library.password_matches("carol", "winter-garden-1")


def test_create_prompt_reads_the_process_stdin_of_the_real_script(
    cli: Cli, library: Library
) -> None:
    outcome = cli.script("users", "create", "dave", input="summer-lake-1\nsummer-lake-1\n")

    assert outcome.code == 0, outcome
    assert "Traceback" not in outcome.stderr, outcome
    assert "created user dave" in outcome.stdout
    assert library.password_matches("dave", "summer-lake-1")


def test_create_prompt_asks_again_when_the_two_entries_differ(cli: Cli, library: Library) -> None:
    typed = "winter-garden-1\nwinter-garden-2\nwinter-garden-3\nwinter-garden-3\n"

    outcome = cli.invoke("users", "create", "carol", input=typed)

    assert_ok(outcome)
    assert "do not match" in outcome.stdout + outcome.stderr
    assert outcome.stdout.count("Repeat for confirmation") == 2
    assert library.password_matches("carol", "winter-garden-3")
    assert not library.password_matches("carol", "winter-garden-1")


def test_create_prompt_fails_with_one_line_when_input_ends_after_a_mismatch(
    cli: Cli, library: Library
) -> None:
    outcome = cli.invoke("users", "create", "carol", input="winter-garden-1\nwinter-garden-2\n")

    assert_handled_error(outcome, "no password entered")
    assert library.usernames() == []


def test_create_prompt_refuses_an_empty_password(cli: Cli, library: Library) -> None:
    outcome = cli.invoke("users", "create", "carol", input="\n\n")

    assert_handled_error(outcome, "The password is empty.")
    assert library.usernames() == []


# ---- list --------------------------------------------------------------------------------


def test_list_shows_name_email_state_and_roles(cli: Cli, library: Library) -> None:
    assert_ok(cli.invoke("roles", "create", "ops"))
    assert_ok(
        cli.invoke(
            "users", "create", "alice", "--email", "alice@example.org",
            "--role", "ops", "--role", "admin", "--password-stdin",
            input="maple-syrup-password-1\n",
        )
    )  # fmt: skip
    bob = library.add_user("bob")
    library.run(lambda services: services.users.set_active(bob.id, False))

    outcome = cli.invoke("users", "list")

    assert_ok(outcome)
    rows = table(outcome.stdout, USERS_HEADER)
    assert rows == [
        ["alice", "alice@example.org", "active", "admin,ops"],
        ["bob", "-", "disabled", "-"],
    ]


def test_list_on_a_fresh_data_dir_prints_only_the_header(cli: Cli) -> None:
    outcome = cli.invoke("users", "list")

    assert_ok(outcome)
    assert table(outcome.stdout, USERS_HEADER) == []


# ---- set-password ------------------------------------------------------------------------


def test_set_password_replaces_the_hash_and_ends_that_users_sessions(
    cli: Cli, library: Library
) -> None:
    alice = library.add_user("alice", password="old-password-1")
    bob = library.add_user("bob")
    library.add_session(alice)
    library.add_session(alice, ip="203.0.113.7")
    bob_session = library.add_session(bob)

    outcome = cli.script(
        "users", "set-password", "alice", "--password-stdin", input="new-password-2\n"
    )

    assert_ok(outcome)
    assert "2 session(s) ended" in outcome.stdout
    assert library.live_sessions(alice) == set()
    assert library.live_sessions(bob) == {bob_session}
    assert library.password_matches("alice", "new-password-2")
    assert not library.password_matches("alice", "old-password-1")


def test_set_password_prompts_twice_and_matches_the_name_case_blind(
    cli: Cli, library: Library
) -> None:
    alice = library.add_user("alice", password="old-password-1")
    library.add_session(alice)

    outcome = cli.invoke("users", "set-password", "ALICE", input="new-password-2\nnew-password-2\n")

    assert_ok(outcome)
    assert "Repeat for confirmation" in outcome.stdout
    assert "new-password-2" not in outcome.stdout + outcome.stderr
    assert library.password_matches("alice", "new-password-2")
    assert library.live_sessions(alice) == set()


def test_set_password_refuses_a_too_short_password_and_keeps_everything(
    cli: Cli, library: Library
) -> None:
    alice = library.add_user("alice", password="old-password-1")
    session = library.add_session(alice)

    outcome = cli.invoke("users", "set-password", "alice", "--password-stdin", input="short\n")

    assert_handled_error(outcome, "at least 8 characters")
    assert library.password_matches("alice", "old-password-1")
    assert library.live_sessions(alice) == {session}


def test_set_password_refuses_a_password_containing_the_user_name(
    cli: Cli, library: Library
) -> None:
    alice = library.add_user("alice", password="old-password-1")
    session = library.add_session(alice)

    outcome = cli.script(
        "users", "set-password", "alice", "--password-stdin", input="ALICE-in-wonderland-2\n"
    )

    assert_handled_error(outcome, "must not contain the user name")
    assert library.password_matches("alice", "old-password-1")
    assert library.live_sessions(alice) == {session}


# ---- the login back-off ------------------------------------------------------------------


@pytest.fixture
def shared_limits(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate limits in the database, where the command and the servers see the same ones."""
    monkeypatch.setenv("BASTION_RATELIMIT_STORE", "sql")
    monkeypatch.setenv("BASTION_LOGIN_MAX_FAILURES", "2")


def put_in_backoff(library: Library, name: str) -> None:
    async def work(services: Services) -> None:
        sign_in = services.authenticator.authenticate
        for _ in range(2):
            with pytest.raises(AuthenticationFailed):
                await sign_in(name, "wrong-guess-1", ip=None, user_agent=None, channel="web")
        with pytest.raises(RateLimited):
            await sign_in(name, "wrong-guess-1", ip=None, user_agent=None, channel="web")

    library.run(work)


def login_failures(library: Library, name: str) -> int:
    async def work(services: Services) -> int:
        limiter = services.authenticator.limiter
        assert isinstance(limiter, LoginThrottle)
        return await limiter.failures(name)

    return library.run(work)


@pytest.mark.usefixtures("shared_limits")
@pytest.mark.parametrize(
    ("command", "stdin"),
    [
        pytest.param(["users", "enable", "alice"], None, id="enable"),
        pytest.param(
            ["users", "set-password", "alice", "--password-stdin"],
            "new-password-2\n",
            id="set-password",
        ),
    ],
)
def test_enable_and_set_password_end_the_login_backoff(
    cli: Cli, library: Library, command: list[str], stdin: str | None
) -> None:
    library.add_user("alice", password="old-password-1")
    library.add_user("bob")
    put_in_backoff(library, "alice")
    put_in_backoff(library, "bob")
    assert login_failures(library, "alice") == 2

    assert_ok(cli.invoke(*command, input=stdin))

    assert login_failures(library, "alice") == 0
    assert login_failures(library, "bob") == 2  # only that account's


# ---- disable / enable --------------------------------------------------------------------


def test_disable_ends_that_users_sessions_and_enable_lets_them_back(
    cli: Cli, library: Library
) -> None:
    alice = library.add_user("alice", password="maple-syrup-password-1")
    bob = library.add_user("bob")
    library.add_session(alice)
    library.add_session(alice)
    bob_session = library.add_session(bob)

    disabled = cli.invoke("users", "disable", "alice")

    assert_ok(disabled)
    assert "2 session(s) ended" in disabled.stdout
    assert library.live_sessions(alice) == set()
    assert library.live_sessions(bob) == {bob_session}
    after_disable = library.user("alice")
    assert after_disable is not None
    assert not after_disable.is_active

    enabled = cli.invoke("users", "enable", "alice")

    assert_ok(enabled)
    after_enable = library.user("alice")
    assert after_enable is not None
    assert after_enable.is_active
    assert library.password_matches("alice", "maple-syrup-password-1")


# ---- a session store the command cannot reach ----------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "users set-password alice --password-stdin",
        "users disable alice",
        "users delete alice --yes",
        "users delete alice",
        "sessions list",
        "sessions list --user alice",
        "sessions revoke 0123456789abcdef",
        "sessions revoke-all alice",
    ],
)
def test_commands_that_reach_sessions_refuse_a_process_local_session_store_and_change_nothing(
    cli: Cli, library: Library, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    library.add_user("alice", password="old-password-1")
    # The server's sessions would be in its own memory: this process would see none of them.
    monkeypatch.setenv("BASTION_SESSION_STORE", "memory")

    outcome = cli.invoke(*command.split(), input="new-password-2\ny\n")

    assert_handled_error(outcome, "BASTION_SESSION_STORE=memory")
    assert "sql or redis session store" in outcome.stderr
    assert outcome.stdout == ""  # neither a prompt nor a report of success
    alice = library.user("alice")
    assert alice is not None
    assert alice.is_active
    assert library.password_matches("alice", "old-password-1")


def test_enable_and_list_work_with_a_process_local_session_store(
    cli: Cli, library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = library.add_user("alice")
    library.run(lambda services: services.users.set_active(alice.id, False))
    monkeypatch.setenv("BASTION_SESSION_STORE", "memory")

    enabled = cli.invoke("users", "enable", "alice")
    listed = cli.invoke("users", "list")

    assert_ok(enabled)
    assert table(listed.stdout, USERS_HEADER) == [["alice", "-", "active", "-"]]


# ---- delete ------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["n\n", "\n", ""], ids=["no", "default", "end-of-input"])
def test_delete_asks_first_and_anything_but_yes_keeps_the_user(
    cli: Cli, library: Library, answer: str
) -> None:
    alice = library.add_user("alice")
    session = library.add_session(alice)

    outcome = cli.invoke("users", "delete", "alice", input=answer)

    assert_handled_error(outcome, "not confirmed")
    assert "Delete user alice?" in outcome.stdout
    assert library.user("alice") is not None
    assert library.live_sessions(alice) == {session}


def test_delete_after_a_yes_removes_the_user_and_ends_their_sessions(
    cli: Cli, library: Library
) -> None:
    alice = library.add_user("alice")
    bob = library.add_user("bob")
    library.add_session(alice)
    bob_session = library.add_session(bob)

    outcome = cli.invoke("users", "delete", "alice", input="y\n")

    assert_ok(outcome)
    assert "deleted user alice" in outcome.stdout
    assert library.user("alice") is None
    assert library.live_sessions(alice) == set()
    assert library.usernames() == ["bob"]
    assert library.live_sessions(bob) == {bob_session}


def test_delete_with_yes_flag_does_not_ask(cli: Cli, library: Library) -> None:
    library.add_user("alice")

    outcome = cli.invoke("users", "delete", "alice", "--yes")

    assert_ok(outcome)
    assert "Delete user" not in outcome.stdout
    assert library.user("alice") is None


# ---- unknown users -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "users set-password nobody --password-stdin",
        "users disable nobody",
        "users enable nobody",
        "users delete nobody --yes",
        "sessions list --user nobody",
        "sessions revoke-all nobody",
    ],
)
def test_commands_on_an_unknown_user_fail_with_one_line(
    cli: Cli, library: Library, command: str
) -> None:
    library.add_user("alice")

    outcome = cli.invoke(*command.split(), input="nobody-password-1\n")

    assert_handled_error(outcome, "no such user: nobody")
    assert library.usernames() == ["alice"]


def test_create_refuses_a_password_containing_the_user_name(cli: Cli, library: Library) -> None:
    outcome = cli.invoke(
        "users", "create", "alice", "--password-stdin", input="ALICE-in-wonderland-1\n"
    )
    assert outcome.code == 1
    assert "user name" in outcome.stderr
    assert library.usernames() == []
