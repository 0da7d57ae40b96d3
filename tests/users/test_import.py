"""Importing users with the password hashes of another system (``bastion.users.importer``),
on SQLite and on the real PostgreSQL server; the CLI command is tested in tests/cli/."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest

from bastion import passwords as passwords_module
from bastion.audit import AuditTrail
from bastion.auth import Authenticator
from bastion.exceptions import AuthenticationFailed, UserError
from bastion.passwords import Passwords, has_usable_password
from bastion.users.importer import (
    ImportFileError,
    ImportReport,
    RowProblem,
    SourceRow,
    UserFile,
    format_of,
    import_users,
    parse_users,
)
from bastion.users.repository import UserRepository, new_user
from bastion.users.roles import UnknownRole
from tests.roles import define_roles
from tests.users.legacy_hashes import (
    PBKDF2_ITERATIONS,
    Legacy,
    as_csv,
    as_json,
    django_pbkdf2,
    legacy_users,
    plain_bcrypt,
)


@pytest.fixture(scope="module")
def thousand() -> list[Legacy]:
    return legacy_users(1000)


FILES = {"csv": as_csv, "json": as_json}


@pytest.fixture
def fast_passwords(monkeypatch: pytest.MonkeyPatch) -> Passwords:
    """Argon2id at a tiny cost, for the test that signs 1,000 users in twice: what it tests
    is the upgrade path, not the cost (the minimums are lowered for this test only)."""
    monkeypatch.setattr(passwords_module, "MIN_MEMORY_COST", 64)
    monkeypatch.setattr(passwords_module, "MIN_TIME_COST", 1)
    return Passwords(memory_cost=64, time_cost=1)


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords()


async def run_import(
    repo: UserRepository, passwords: Passwords, data: bytes, format: str, dry_run: bool = False
) -> ImportReport:
    source = parse_users(data, format_of(f"users.{format}"))
    return await import_users(
        source, users=repo, passwords=passwords, audit=AuditTrail(repo), dry_run=dry_run
    )


# -- 1,000 users: import, sign in with the old password, upgraded to Argon2id -----------------


@pytest.mark.parametrize("format", ["csv", "json"])
async def test_thousand_users_import_in_one_batch_with_their_hashes_kept(
    repo: UserRepository, passwords: Passwords, thousand: list[Legacy], format: str
) -> None:
    await define_roles(repo, ["staff"])

    report = await run_import(repo, passwords, FILES[format](thousand), format)

    assert report == ImportReport(rows=1000, imported=1000, problems=(), dry_run=False)
    stored = {u.username: u for u in await repo.list_users(limit=2000)}
    assert len(stored) == 1000
    for legacy in thousand:
        user = stored[legacy.username]
        assert user.password_hash == legacy.password_hash  # kept as it was, not re-hashed
        assert user.email == legacy.email
        assert user.roles == set(legacy.roles)
        assert user.is_active


async def test_thousand_imported_users_sign_in_with_their_old_passwords_and_get_argon2id(
    repo: UserRepository, fast_passwords: Passwords, thousand: list[Legacy]
) -> None:
    # Half from a CSV file, half from a JSON file: both formats, and an import beside
    # accounts that already exist.
    await define_roles(repo, ["staff"])
    first = await run_import(repo, fast_passwords, as_csv(thousand[:500]), "csv")
    second = await run_import(repo, fast_passwords, as_json(thousand[500:]), "json")
    assert (first.imported, second.imported) == (500, 500)
    authenticator = Authenticator(repo, fast_passwords, AuditTrail(repo))
    at_once = asyncio.Semaphore(8)  # sign-ins overlap, as they would on a server

    async def sign_in(legacy: Legacy) -> None:
        async with at_once:
            user = await authenticator.authenticate(
                legacy.username, legacy.password, ip=None, user_agent=None, channel="web"
            )
        assert user.username == legacy.username

    async def stored_hashes() -> dict[str, str]:
        return {u.username: u.password_hash for u in await repo.list_users(limit=2000)}

    await asyncio.gather(*(sign_in(legacy) for legacy in thousand))

    upgraded = await stored_hashes()
    assert len(upgraded) == 1000
    for legacy in thousand:
        new_hash = upgraded[legacy.username]
        assert new_hash.startswith("$argon2id$v=19$m=64,t=1,p=1$"), legacy.username
        assert fast_passwords.verify(legacy.password, new_hash) == (True, False)

    # The second sign-in verifies the Argon2id hash itself: nothing is re-hashed again.
    await asyncio.gather(*(sign_in(legacy) for legacy in thousand))

    assert await stored_hashes() == upgraded


async def test_imported_user_with_a_wrong_password_is_refused_and_keeps_the_old_hash(
    repo: UserRepository, fast_passwords: Passwords, thousand: list[Legacy]
) -> None:
    legacy = thousand[:4]
    await define_roles(repo, ["staff"])
    assert (await run_import(repo, fast_passwords, as_csv(legacy), "csv")).imported == 4
    authenticator = Authenticator(repo, fast_passwords, AuditTrail(repo))

    for user in legacy:
        with pytest.raises(AuthenticationFailed):
            await authenticator.authenticate(
                user.username, user.password + "x", ip=None, user_agent=None, channel="api"
            )
        stored = await repo.get_by_username(user.username)
        assert stored is not None
        assert stored.password_hash == user.password_hash


def test_csv_and_json_of_the_same_users_read_alike(thousand: list[Legacy]) -> None:
    from_csv = parse_users(as_csv(thousand), "csv")
    from_json = parse_users(as_json(thousand), "json")

    assert from_csv.problems == from_json.problems == ()
    assert [r.row for r in from_csv.rows] == list(range(2, 1002))  # the header is row 1
    assert [r.row for r in from_json.rows] == list(range(1, 1001))
    strip = [(r.username, r.email, r.password_hash, r.roles, r.is_active) for r in from_csv.rows]
    assert strip == [
        (r.username, r.email, r.password_hash, r.roles, r.is_active) for r in from_json.rows
    ]


# -- refusals: every problem, by row; nothing written -----------------------------------------

REFUSED_CSV = """\
username,email,password_hash,roles,is_active
alice,alice@example.org,{good},staff,
bob,bob@example.org,md5$salt$0123456789abcdef0123456789abcdef,,
ALICE,alice2@example.org,{good},,
аlice,alice3@example.org,{good},,
carol,carol@example.org,{good},"staff,wizard",
dave,not-an-address,{good},,
erin,alice@example.org,{good},,
taken,taken2@example.org,{good},,
tаken,taken3@example.org,{good},,
frank,frank@example.org,{corrupt},,
"gr ace",,,,
"""


async def test_refused_rows_are_each_reported_with_their_row_and_nothing_is_written(
    repo: UserRepository, passwords: Passwords
) -> None:
    await define_roles(repo, ["staff"])
    await repo.create_user("Taken", plain_bcrypt("x"))
    good = django_pbkdf2("secret")
    # 9,999,999 iterations: Django's format, but one check would take seconds.
    corrupt = good.replace(f"${PBKDF2_ITERATIONS}$", "$9999999$")
    data = REFUSED_CSV.format(good=good, corrupt=corrupt).encode()

    report = await run_import(repo, passwords, data, "csv")

    reasons = {(p.row, p.reason) for p in report.problems}
    assert (3, "unknown password hash format") in {(r, x.split(" (")[0]) for r, x in reasons}
    assert (4, "the same user name as row 2") in reasons
    assert (5, "The user name mixes letters of different scripts (alphabets).") in reasons
    assert (6, str(UnknownRole("wizard"))) in reasons
    assert (7, "The e-mail address is not valid.") in reasons
    assert (8, "the same e-mail address as row 2") in reasons
    assert (9, "an account with this user name already exists") in reasons
    assert (10, "The user name mixes letters of different scripts (alphabets).") in reasons
    assert any(row == 11 and "not a valid django_pbkdf2_sha256" in r for row, r in reasons)
    assert (12, "The user name must not contain spaces.") in reasons
    assert (12, "no password hash") in reasons
    assert {p.row for p in report.problems} == set(range(3, 13))  # row 2 (alice) is fine
    assert report.imported == 0
    assert report.rows == 11
    assert await repo.count_users() == 1  # Taken only: all or nothing
    for problem in report.problems:
        assert "$" not in problem.reason.replace("'$'", "").replace("$2a$, $2b$ or $2y$", "")
        assert good not in str(problem)
        assert corrupt not in str(problem)


async def test_a_look_alike_of_an_existing_account_is_refused(
    repo: UserRepository, passwords: Passwords
) -> None:
    # "adrnin" is how "admin" looks; both are one script, so only the skeleton catches it.
    await repo.create_user("admin", plain_bcrypt("x"))
    data = as_csv([Legacy("adrnin", "x@example.org", "pw", plain_bcrypt("pw"), ())])

    report = await run_import(repo, passwords, data, "csv")

    assert report.problems == (RowProblem(2, "the user name looks like an existing account's"),)
    assert await repo.get_by_username("adrnin") is None


async def test_look_alike_names_inside_one_file_are_refused(
    repo: UserRepository, passwords: Passwords
) -> None:
    pw = plain_bcrypt("pw")
    data = as_json(
        [Legacy("admin", "a@example.org", "pw", pw, ()), Legacy("adrnin", "", "", pw, ())]
    )

    report = await run_import(repo, passwords, data, "json")

    assert report.problems == (RowProblem(2, "a user name that looks like row 1's"),)
    assert await repo.count_users() == 0


async def test_an_existing_email_address_is_refused(
    repo: UserRepository, passwords: Passwords
) -> None:
    await repo.create_user("someone", plain_bcrypt("x"), email="Shared@Example.org")
    data = as_csv([Legacy("other", "shared@example.org", "pw", plain_bcrypt("pw"), ())])

    report = await run_import(repo, passwords, data, "csv")

    assert report.problems == (RowProblem(2, "an account with this e-mail address exists"),)


async def test_dry_run_checks_everything_and_writes_nothing(
    repo: UserRepository, passwords: Passwords, thousand: list[Legacy]
) -> None:
    await define_roles(repo, ["staff"])

    report = await run_import(repo, passwords, as_csv(thousand[:50]), "csv", dry_run=True)

    assert report == ImportReport(rows=50, imported=0, problems=(), dry_run=True)
    assert await repo.count_users() == 0
    assert await repo.count_audit() == 0


async def test_dry_run_reports_the_same_problems_as_an_import(
    repo: UserRepository, passwords: Passwords
) -> None:
    data = as_csv([Legacy("zoe", "zoe@example.org", "pw", "sha1$salt$abc", ("ghost",))])

    dry = await run_import(repo, passwords, data, "csv", dry_run=True)
    real = await run_import(repo, passwords, data, "csv")

    assert dry.problems == real.problems
    assert [p.row for p in real.problems] == [2, 2]
    assert await repo.count_users() == 0


async def test_an_import_is_audited_once_with_the_count_and_no_secrets(
    repo: UserRepository, passwords: Passwords, thousand: list[Legacy]
) -> None:
    await define_roles(repo, ["staff"])
    await run_import(repo, passwords, as_json(thousand[:20]), "json")

    (event,) = await repo.list_audit()
    assert event.event == "user.imported"
    assert event.detail == {"count": 20}
    assert event.user_id is None
    for legacy in thousand[:20]:
        assert legacy.password_hash not in json.dumps(event.detail)


async def test_imported_accounts_keep_is_active_and_a_disabled_one_cannot_sign_in(
    repo: UserRepository, fast_passwords: Passwords
) -> None:
    data = (
        "username,password_hash,is_active\n"
        f"on,{plain_bcrypt('pw-on')},yes\n"
        f"off,{plain_bcrypt('pw-off')},false\n"
    ).encode()
    await run_import(repo, fast_passwords, data, "csv")
    authenticator = Authenticator(repo, fast_passwords, AuditTrail(repo))

    on, off = await repo.get_by_username("on"), await repo.get_by_username("off")
    assert on is not None
    assert (on.is_active, on.email, on.roles) == (True, None, frozenset())
    assert off is not None
    assert not off.is_active
    with pytest.raises(AuthenticationFailed):
        await authenticator.authenticate("off", "pw-off", ip=None, user_agent=None, channel="web")


async def test_a_django_account_without_a_usable_password_comes_across_as_one(
    repo: UserRepository, fast_passwords: Passwords
) -> None:
    """Django marks such accounts (external sign-in only, or locked on purpose) with ``!``:
    the account is imported, no password opens it, not even the marker's own text."""
    marker = "!x3Kq9ZlPp2mW8Rr5Tt7Vv1Yy4Aa6Cc0Ee2Gg4Ii"
    data = f"username,password_hash\nsocial,{marker}\n".encode()
    report = await run_import(repo, fast_passwords, data, "csv")
    assert (report.imported, report.problems) == (1, ())
    social = await repo.get_by_username("social")
    assert social is not None
    assert not has_usable_password(social.password_hash)
    assert social.password_hash != marker  # Bastion's own marker, not the file's text
    authenticator = Authenticator(repo, fast_passwords, AuditTrail(repo))
    for guess in (marker, marker[1:], ""):
        with pytest.raises(AuthenticationFailed):
            await authenticator.authenticate(
                "social", guess, ip=None, user_agent=None, channel="web"
            )


# -- the batch insert ---------------------------------------------------------------------------


async def test_batch_insert_is_all_or_nothing_when_an_account_appeared_meanwhile(
    repo: UserRepository,
) -> None:
    accounts = [new_user(f"batch{i}", plain_bcrypt("pw")) for i in range(5)]
    await repo.create_user("batch3", plain_bcrypt("x"))  # after the checks, before the insert

    with pytest.raises(UserError, match="already exists"):
        await repo.create_users(accounts)

    assert await repo.count_users() == 1


async def test_batch_insert_never_creates_a_role(repo: UserRepository) -> None:
    with pytest.raises(UnknownRole, match="role 'ghost' is not defined"):
        await repo.create_users([new_user("casper", plain_bcrypt("pw"), roles=["ghost"])])

    assert await repo.existing_roles(["ghost"]) == set()
    assert await repo.count_users() == 0


async def test_an_account_taken_between_checks_and_insert_fails_the_whole_import(
    repo: UserRepository, passwords: Passwords, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_insert = repo.create_users

    async def someone_else_first(accounts: Sequence[object]) -> int:
        await repo.create_user("late1", plain_bcrypt("x"))
        return await real_insert(accounts)  # type: ignore[arg-type]

    monkeypatch.setattr(repo, "create_users", someone_else_first)
    data = as_csv([Legacy(f"late{i}", "", "pw", plain_bcrypt("pw"), ()) for i in range(3)])

    with pytest.raises(UserError, match="nothing imported"):
        await run_import(repo, passwords, data, "csv")

    assert [u.username for u in await repo.list_users()] == ["late1"]
    assert await repo.count_audit() == 0


# -- reading files ------------------------------------------------------------------------------


def test_csv_reading_tolerates_a_bom_blank_lines_and_role_separators() -> None:
    data = (
        "\ufeffUserName , Email,password_hash,roles,is_active\r\n"
        "\r\n"
        'a,a@example.org,h1,"admin, staff",0\r\n'
        "b,,h2,admin staff  ops,TRUE\r\n"
        "c,,h3,,\r\n"
    ).encode()

    source = parse_users(data, "csv")

    assert source == UserFile(
        (
            SourceRow(3, "a", "h1", "a@example.org", ("admin", "staff"), False),
            SourceRow(4, "b", "h2", None, ("admin", "staff", "ops"), True),
            SourceRow(5, "c", "h3", None, (), True),
        )
    )


def test_csv_rows_are_numbered_by_the_line_they_start_on() -> None:
    data = b'username,password_hash\n"multi\nline",h\nnext,h\nshort\nbad,h,extra\n'

    source = parse_users(data, "csv")

    assert [r.row for r in source.rows] == [2, 4]
    assert source.problems == (
        RowProblem(5, "1 fields where the header has 2"),
        RowProblem(6, "3 fields where the header has 2"),
    )
    assert source.count == 4


def test_csv_is_active_must_be_a_yes_or_no() -> None:
    source = parse_users(b"username,password_hash,is_active\nx,h,maybe\n", "csv")

    assert source.problems == (RowProblem(2, "is_active must be true or false (or 1/0, yes/no)"),)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"username,email\nx,y\n", "no password_hash column"),
        (b"username,password_hash,pasword\nx,y,z\n", "unknown column 'pasword'"),
        (b"username,password_hash,username\nx,y,z\n", "column username is named twice"),
        (b"username,password_hash\n\xff\n", r"not UTF-8 text \(byte 24\)"),
        (b'username,password_hash\n"x,y\n', "not valid CSV"),
    ],
)
def test_unusable_csv_files_are_refused_whole(data: bytes, message: str) -> None:
    with pytest.raises(ImportFileError, match=message):
        parse_users(data, "csv")


def test_json_rows_of_the_wrong_shape_are_reported_by_row() -> None:
    items = [
        {"username": "ok", "password_hash": "h", "roles": "a, b", "is_active": None},
        "not an object",
        {"username": 7, "password_hash": "h"},
        {"username": "x"},
        {"username": "x", "password_hash": "h", "roles": [1]},
        {"username": "x", "password_hash": "h", "is_active": "yes"},
        {"username": "x", "password_hash": "h", "email": 3},
        {"username": "x", "password_hash": "h", "extra": 1},
    ]

    source = parse_users(json.dumps(items).encode(), "json")

    assert source.rows == (SourceRow(1, "ok", "h", None, ("a", "b"), True),)
    assert [(p.row, p.reason.split(" (")[0]) for p in source.problems] == [
        (2, "not an object"),
        (3, "username must be a string"),
        (4, "no password_hash column"),
        (5, "roles must be a list of strings, a string or null"),
        (6, "is_active must be true, false or null"),
        (7, "email must be a string or null"),
        (8, "unknown column 'extra'"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [(b'{"users": []}', "must hold a list"), (b"[{]", r"not valid JSON \(line 1, column 3")],
)
def test_unusable_json_files_are_refused_whole(data: bytes, message: str) -> None:
    with pytest.raises(ImportFileError, match=message):
        parse_users(data, "json")


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [("users.csv", None, "csv"), ("USERS.JSON", None, "json"), ("export.txt", "csv", "csv")],
)
def test_the_format_comes_from_the_option_or_the_extension(
    name: str, given: str | None, expected: str
) -> None:
    assert format_of(name, given) == expected


@pytest.mark.parametrize(("name", "given"), [("export.txt", None), (".csv", None), ("a", "xml")])
def test_an_unknown_format_is_refused(name: str, given: str | None) -> None:
    with pytest.raises(ImportFileError, match="format"):
        format_of(name, given)
