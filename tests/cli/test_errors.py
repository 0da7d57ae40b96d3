"""Exit status and error output: 1 with one ``error: ...`` line, 2 on usage errors."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import typer

from bastion.cli import app
from tests.cli.conftest import Cli, Library, assert_handled_error, assert_ok, assert_usage_error

# The real console script, once per kind of usage error.


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "No such command"),
        (["users", "create"], "Missing argument"),
        (["users", "list", "--bogus"], "No such option"),
    ],
    ids=["unknown-command", "missing-argument", "unknown-option"],
)
def test_usage_errors_exit_2_without_traceback(cli: Cli, args: list[str], message: str) -> None:
    assert_usage_error(cli.script(*args), message)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("users frobnicate", "No such command"),
        ("sessions revoke", "Missing argument"),
        ("sessions revoke-all", "Missing argument"),
        ("users create alice --role", "requires an argument"),
        ("users delete alice --yes extra", "unexpected extra argument"),
        ("keys rotate now", "unexpected extra argument"),
        ("serve --port http", "Invalid value"),
        ("serve --port 0", "Invalid value"),
        ("serve --workers 0", "Invalid value"),
    ],
)
def test_more_usage_errors_exit_2(cli: Cli, library: Library, command: str, message: str) -> None:
    library.add_user("alice")

    assert_usage_error(cli.invoke(*command.split()), message)
    assert library.usernames() == ["alice"]


def test_invalid_settings_fail_with_one_line(cli: Cli) -> None:
    outcome = cli.script("users", "list", env={"BASTION_LOGIN_IP_LIMIT": "lots"})

    line = assert_handled_error(outcome, "login_ip_limit")
    assert "30/minute" in line  # says what a valid value looks like


@pytest.mark.parametrize(
    "command",
    [
        "users create alice --password-stdin",
        "users set-password alice --password-stdin",
        "sessions list",
        "keys list",
        "keys rotate",
        "db upgrade",
    ],
)
@pytest.mark.parametrize(
    "setting",
    [
        {"BASTION_LOGIN_IP_LIMIT": "lots"},
        {"BASTION_PASSWORD_MIN_LENGTH": "zero"},
        {"BASTION_JWT_ALGORITHM": "none"},
        {"BASTION_SESSION_STORE": "redis"},  # without BASTION_REDIS_URL
    ],
    ids=lambda value: "=".join(next(iter(value.items()))),
)
def test_every_command_refuses_invalid_settings_with_one_line(
    cli: Cli, command: str, setting: dict[str, str]
) -> None:
    outcome = cli.invoke(*command.split(), input="maple-syrup-password-1\n", env=setting)

    assert_handled_error(outcome, "invalid setting")
    assert not (cli.data_dir / "jwks.json").exists()
    assert not (cli.data_dir / "bastion.db").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("command", ["users list", "db upgrade"])
def test_unreachable_database_fails_fast_with_one_line(cli: Cli, command: str) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/x"

    started = time.monotonic()
    outcome = cli.script(*command.split(), env={"BASTION_DATABASE_URL": url})
    elapsed = time.monotonic() - started

    assert_handled_error(outcome, "database unavailable")
    assert elapsed < 15  # process start-up included; no 60 s connect timeout, no retries


@pytest.mark.parametrize(
    "command",
    [
        "users create alice --password-stdin",
        "users set-password alice --password-stdin",
        "users disable alice",
        "users delete alice --yes",
        "sessions list",
        "sessions revoke-all alice",
    ],
)
def test_every_database_command_reports_an_unreachable_database_in_one_line(
    cli: Cli, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "BASTION_DATABASE_URL", f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/x"
    )

    outcome = cli.invoke(*command.split(), input="maple-syrup-password-1\n")

    assert_handled_error(outcome, "unavailable")


# ---- help ----------------------------------------------------------------------------------


def _command_paths() -> list[list[str]]:
    """Every command and group of ``bastion``, as the words that name it."""
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda path: " ".join(path) or "bastion")
def test_help_shows_flags_bare_and_names_what_options_take(cli: Cli, path: list[str]) -> None:
    outcome = cli.invoke(*path, "--help")

    assert_ok(outcome)
    assert "--help  " in outcome.stdout  # a flag: no value after it
    for noise in ("<bool>", "[default: False]", "<int", "<list"):
        assert noise not in outcome.stdout, noise
