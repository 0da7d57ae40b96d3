"""``bastion users create`` refuses look-alikes of existing names, as registration does."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli, Library, assert_handled_error


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("adm\u0131n", "already exists", id="dotless-i"),
        pytest.param("ADM\u0130N", "already exists", id="dotted-capital-i"),
        pytest.param("\u0430dmin", "different scripts", id="cyrillic-a"),
        pytest.param("admin\u3164", "invisible", id="hangul-filler"),
    ],
)
def test_create_refuses_a_name_that_looks_like_an_account(
    cli: Cli, library: Library, name: str, message: str
) -> None:
    library.add_user("admin")

    outcome = cli.invoke("users", "create", name, "--password-stdin", input="a-password-42\n")

    assert_handled_error(outcome, message)
    assert library.usernames() == ["admin"]
