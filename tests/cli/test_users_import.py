"""``bastion users import FILE [--format csv|json] [--dry-run]``, end to end: the real
console script on the embedded SQLite database, and the command on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.exceptions import AuthenticationFailed
from bastion.services import Services
from tests.cli.conftest import (
    USERS_HEADER,
    Cli,
    Library,
    assert_handled_error,
    assert_ok,
    table,
)
from tests.roles import define_roles
from tests.users.legacy_hashes import (
    Legacy,
    as_csv,
    as_json,
    django_pbkdf2,
    legacy_users,
    plain_bcrypt,
)


def define(library: Library, *roles: str) -> None:
    library.run(lambda services: define_roles(services.users, roles))


def sign_in(library: Library, name: str, password: str) -> str:
    """Sign ``name`` in through the services' own Authenticator; the stored hash after."""

    async def work(services: Services) -> str:
        await services.authenticator.authenticate(
            name, password, ip="127.0.0.1", user_agent=None, channel="web"
        )
        user = await services.users.get_by_username(name)
        assert user is not None
        return user.password_hash

    return library.run(work)


def audit_events(library: Library) -> list[tuple[str, object]]:
    async def work(services: Services) -> list[tuple[str, object]]:
        return [(e.event, e.detail) for e in await services.users.list_audit(limit=100)]

    return library.run(work)


def write(cli: Cli, name: str, data: bytes) -> Path:
    path = cli.workdir / name
    path.write_bytes(data)
    return path


def test_import_from_csv_keeps_the_hashes_and_each_user_signs_in_upgraded(
    cli: Cli, library: Library
) -> None:
    users = legacy_users(40)
    define(library, "staff")
    path = write(cli, "export.csv", as_csv(users))

    outcome = cli.script("users", "import", str(path))

    assert_ok(outcome)
    assert outcome.stdout.startswith("imported 40 user(s);")
    listed = table(cli.script("users", "list").stdout, USERS_HEADER)
    assert [row[0] for row in listed] == [u.username for u in users]
    assert listed[0] == ["user0000", "user0000@example.org", "active", "staff"]
    assert audit_events(library) == [("user.imported", {"by": "cli", "count": 40, "format": "csv"})]
    for legacy in users[:4]:  # one of each kind of hash
        assert legacy.password_hash not in outcome.stdout + outcome.stderr
        assert sign_in(library, legacy.username, legacy.password).startswith("$argon2id$")


def test_import_dry_run_of_a_json_file_writes_nothing(cli: Cli, library: Library) -> None:
    path = write(cli, "export.JSON", as_json(legacy_users(9, role=None)))

    outcome = cli.invoke("users", "import", str(path), "--dry-run")

    assert_ok(outcome)
    assert outcome.stdout == "dry run: 9 user(s) would be imported; nothing written\n"
    assert library.usernames() == []
    assert audit_events(library) == []


def test_import_refuses_the_whole_file_and_lists_each_refused_row(
    cli: Cli, library: Library
) -> None:
    define(library, "staff")
    library.add_user("existing")
    good = django_pbkdf2("pw")
    rows = [
        Legacy("jim", "jim@example.org", "pw", good, ("staff",)),
        Legacy("badhash", "b@example.org", "pw", "md5$salt$0123456789abcdef", ()),
        Legacy("JIM", "jim2@example.org", "pw", good, ()),
        Legacy("jirn", "jim3@example.org", "pw", good, ()),  # "rn" looks like "m"
        Legacy("ghost", "g@example.org", "pw", good, ("wizard",)),
        Legacy("mail", "no-at-sign", "pw", good, ()),
        Legacy("Existing", "e@example.org", "pw", good, ()),
    ]
    path = write(cli, "export.csv", as_csv(rows))

    outcome = cli.script("users", "import", str(path))

    assert_handled_error(outcome, "6 of 7 row(s) refused; nothing imported")
    assert outcome.stdout.splitlines() == [
        "row 3: unknown password hash format (known: argon2, bcrypt, django_pbkdf2_sha256, "
        "django_pbkdf2_sha1, django_bcrypt_sha256, django_bcrypt, django_argon2)",
        "row 4: the same user name as row 2",
        "row 5: a user name that looks like row 2's",
        "row 6: The role 'wizard' is not defined. Define it first with: "
        "bastion roles create wizard",
        "row 7: The e-mail address is not valid.",
        "row 8: an account with this user name already exists",
    ]
    assert good not in outcome.stdout + outcome.stderr
    assert library.usernames() == ["existing"]
    assert audit_events(library) == []


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("users.txt", b"username,password_hash\n", "cannot tell the format from the file name"),
        ("users.csv", b"", "no users in the file"),
        ("users.csv", b"username,password_hash\n", "no users in the file"),
        ("users.csv", b"name,hash\nx,y\n", "CSV header: unknown column 'name'"),
        ("users.json", b"{}", "must hold a list of user objects"),
    ],
)
def test_import_of_an_unusable_file_is_one_line(
    cli: Cli, library: Library, name: str, data: bytes, message: str
) -> None:
    path = write(cli, name, data)

    assert_handled_error(cli.invoke("users", "import", str(path)), message)
    assert library.usernames() == []


def test_import_of_a_missing_file_is_one_line(cli: Cli) -> None:
    outcome = cli.invoke("users", "import", str(cli.workdir / "nowhere.csv"))

    assert_handled_error(outcome, "cannot read nowhere.csv: No such file or directory")


def test_import_format_option_overrides_the_extension_and_must_be_known(
    cli: Cli, library: Library
) -> None:
    path = write(cli, "export.txt", as_json(legacy_users(3, role=None)))

    assert_ok(cli.invoke("users", "import", str(path), "--format", "json"))
    assert library.usernames() == ["user0000", "user0001", "user0002"]
    outcome = cli.script("users", "import", str(path), "--format", "xml")
    assert outcome.code == 2
    assert "Traceback" not in outcome.stderr


@pytest.mark.backend("postgres")
def test_import_on_postgresql_and_the_imported_user_signs_in(
    cli: Cli, library: Library, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_DATABASE_URL", fresh_postgres_url)
    assert_ok(cli.invoke("db", "upgrade"))
    users = [
        Legacy("pat", "pat@example.org", "pat's old one", django_pbkdf2("pat's old one"), ()),
        Legacy("sam", "", "sam's old one", plain_bcrypt("sam's old one"), ()),
    ]
    path = write(cli, "export.json", as_json(users))

    assert_ok(cli.invoke("users", "import", str(path)))
    # An import of the same users again: every row is now taken, nothing changes.
    again = cli.invoke("users", "import", str(path))
    assert_handled_error(again, "2 of 2 row(s) refused")

    assert library.usernames() == ["pat", "sam"]
    with pytest.raises(AuthenticationFailed):
        sign_in(library, "pat", "not pat's")
    for legacy in users:
        assert sign_in(library, legacy.username, legacy.password).startswith("$argon2id$")
