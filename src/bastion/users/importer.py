"""Bringing an application's existing users into Bastion with the password hashes they have.

The file (CSV with a header row, or a JSON list of objects) names each user's ``username``,
``password_hash``, and optionally ``email``, ``roles`` and ``is_active``. Nobody's password
is known here, so no password is hashed: the hashes are stored as they are, and each one is
verified and replaced by an Argon2id hash at that user's next sign-in (``Passwords`` knows
bcrypt, Argon2 and Django's formats).

Every row is checked before anything is written: the rules of a new account (those of
``bastion users create``, through :func:`bastion.users.repository.new_user`), a hash that a
scheme of the ``Passwords`` in use recognises, roles that exist, and no name, look-alike or
e-mail address taken twice in the file or by an existing account. Any problem refuses the
whole file, with every problem reported by row; otherwise all rows are inserted in one
transaction. All or nothing: a second run after a fix never meets half an import.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from bastion.audit import AuditTrail
from bastion.exceptions import UserError
from bastion.passwords import Passwords, unusable_password_hash
from bastion.text import clean_text
from bastion.users.models import check_new_username, normalize_email, normalize_role
from bastion.users.repository import NewUser, UserRepository, new_user
from bastion.users.roles import UnknownRole

Format = Literal["csv", "json"]
FORMATS: Final[tuple[Format, ...]] = get_args(Format)
COLUMNS: Final = ("username", "email", "password_hash", "roles", "is_active")
REQUIRED_COLUMNS: Final = ("username", "password_hash")

DJANGO_UNUSABLE_PREFIX: Final = "!"
_TRUE: Final = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE: Final = frozenset({"0", "false", "f", "no", "n", "off"})


class ImportFileError(UserError):
    """The file as a whole cannot be read as users (not UTF-8, not CSV or JSON of the
    expected shape, a missing or unknown column). The message never quotes its content."""


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One user as the file gives it, with its row number.

    CSV rows are numbered like the file's lines (the header is row 1, the first user row 2;
    a quoted field across lines counts from its first line); JSON rows are the 1-based
    position in the list.
    """

    row: int
    username: str
    password_hash: str = field(repr=False)
    email: str | None = None
    roles: tuple[str, ...] = ()
    is_active: bool = True


@dataclass(frozen=True, slots=True)
class RowProblem:
    row: int
    reason: str  # never holds a password hash

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did or, with ``dry_run``, would do. ``imported`` is 0 whenever there
    are problems (nothing is written) and on a dry run."""

    rows: int
    imported: int
    problems: tuple[RowProblem, ...]
    dry_run: bool

    @property
    def accepted(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class UserFile:
    """A file's users: the rows that could be read, and the problems of those that could
    not (a wrong number of CSV fields, a JSON value of the wrong type)."""

    rows: tuple[SourceRow, ...]
    problems: tuple[RowProblem, ...] = ()

    @property
    def count(self) -> int:
        """How many users the file holds, readable or not."""
        return len(self.rows) + len({problem.row for problem in self.problems})


def format_of(filename: str, given: str | None = None) -> Format:
    """``given`` when set, else the format the file name's extension says."""
    if given:
        choice = given.lower()
    else:
        stem, dot, extension = filename.rpartition(".")
        choice = extension.lower() if dot and stem else ""
    for name in FORMATS:
        if choice == name:
            return name
    if given:
        raise ImportFileError("unknown format; use csv or json")
    raise ImportFileError("cannot tell the format from the file name; pass --format csv or json")


def parse_users(data: bytes, format: Format) -> UserFile:
    """The users of a CSV or JSON file.

    Raises :class:`ImportFileError` when the file as a whole is unusable.
    """
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (spreadsheet exports) is skipped
    except UnicodeDecodeError as error:
        raise ImportFileError(f"the file is not UTF-8 text (byte {error.start + 1})") from None
    return _parse_csv(text) if format == "csv" else _parse_json(text)


async def import_users(
    source: UserFile,
    *,
    users: UserRepository,
    passwords: Passwords,
    audit: AuditTrail,
    dry_run: bool = False,
    detail: Mapping[str, Any] | None = None,
    **context: Any,
) -> ImportReport:
    """Check every row, then insert them all in one transaction, unless a row has a problem
    (the file's own problems count too) or ``dry_run``.

    A written import is audited as one ``user.imported`` event holding the count and
    ``detail`` (no names, no hashes); ``context`` (``actor_id``, ``ip``...) goes to the
    audit record as for :class:`bastion.accounts.Accounts`.
    """
    found = list(source.problems)
    accounts = _check_rows(source.rows, passwords, found)
    found += await _check_taken(accounts, users)
    found += await _check_roles(accounts, users)
    found.sort(key=lambda problem: problem.row)
    total = source.count
    if found or dry_run or not accounts:
        return ImportReport(total, 0, tuple(found), dry_run)
    try:
        imported = await users.create_users([account for _, account in accounts])
    except UserError as error:
        # Someone else made a clashing account or removed a role since the checks; the
        # transaction rolled back, so this is still all or nothing.
        raise UserError(f"{error} (changed while importing); nothing imported") from None
    # After the commit, like every account change; an audit outage now loses the stored
    # event (the log line remains), never the import.
    await audit.record("user.imported", detail={**(detail or {}), "count": imported}, **context)
    return ImportReport(total, imported, (), dry_run)


# -- checks ----------------------------------------------------------------------------------


def _check_rows(
    rows: Sequence[SourceRow], passwords: Passwords, problems: list[RowProblem]
) -> list[tuple[int, NewUser]]:
    """The accounts of the rows whose name, address and role names pass the rules of new
    accounts, in row order, for the checks against each other and the database. Every
    problem found (all of a row's, not only its first) is added to ``problems``; a row with
    an unusable hash still takes part in the later checks, so one run reports everything."""
    accounts: list[tuple[int, NewUser]] = []
    for row in rows:
        stored = _stored_hash(row.password_hash)
        # A Django marker became Bastion's own: nothing to verify.
        unusable = passwords.why_unusable(stored) if stored == row.password_hash else None
        if unusable is not None:
            problems.append(RowProblem(row.row, unusable))
        reasons = _field_reasons(row)
        if reasons:
            problems.extend(RowProblem(row.row, reason) for reason in reasons)
            continue
        account = new_user(row.username, stored, row.email, row.roles, row.is_active)
        accounts.append((row.row, account))
    # The same name, look-alike or address twice in the file: the later row is reported.
    first: dict[tuple[str, str], int] = {}
    unique: list[tuple[int, NewUser]] = []
    for number, account in accounts:
        clash = _first_clash(number, account, first)
        if clash is None:
            unique.append((number, account))
        else:
            problems.append(RowProblem(number, clash))
    return unique


def _stored_hash(given: str) -> str:
    """What to store for a row's hash. Django marks an account without a usable password
    (made for external sign-in, or disabled on purpose) with ``!`` and random text; such
    an account comes across as one here too: it exists, no password opens it, and an
    operator can set one (``bastion users set-password``, the admin pages)."""
    if isinstance(given, str) and given.startswith(DJANGO_UNUSABLE_PREFIX):
        return unusable_password_hash()
    return given


def _field_reasons(row: SourceRow) -> list[str]:
    """What is wrong with a row's name, address and role names, each checked on its own by
    the rules :func:`new_user` applies."""
    checks: list[tuple[Callable[[str], str], str]] = [(check_new_username, row.username)]
    if row.email is not None and row.email.strip():
        checks.append((normalize_email, row.email))
    checks += [(normalize_role, role) for role in row.roles]
    reasons: list[str] = []
    for check, value in checks:
        try:
            check(value)
        except UserError as error:
            reasons.append(str(error))
    return reasons


def _first_clash(number: int, account: NewUser, first: dict[tuple[str, str], int]) -> str | None:
    keys = [
        ("name", account.username_key, "the same user name as row {}"),
        ("skeleton", account.username_skeleton, "a user name that looks like row {}'s"),
        ("email", account.email_key, "the same e-mail address as row {}"),
    ]
    for kind, key, message in keys:
        if key is None:
            continue
        earlier = first.get((kind, key))
        if earlier is not None:
            return message.format(earlier)
    for kind, key, _ in keys:
        if key is not None:
            first[(kind, key)] = number
    return None


async def _check_taken(
    accounts: Sequence[tuple[int, NewUser]], users: UserRepository
) -> list[RowProblem]:
    taken = await users.find_taken(
        (a.username_key for _, a in accounts),
        (a.username_skeleton for _, a in accounts),
        (a.email_key for _, a in accounts if a.email_key is not None),
    )
    problems: list[RowProblem] = []
    for number, account in accounts:
        if account.username_key in taken.username_keys:
            problems.append(RowProblem(number, "an account with this user name already exists"))
        elif account.username_skeleton in taken.skeletons:
            problems.append(RowProblem(number, "the user name looks like an existing account's"))
        if account.email_key is not None and account.email_key in taken.email_keys:
            problems.append(RowProblem(number, "an account with this e-mail address exists"))
    return problems


async def _check_roles(
    accounts: Sequence[tuple[int, NewUser]], users: UserRepository
) -> list[RowProblem]:
    """Imported users get only defined roles (``bastion roles create``): the one place the
    import decides which roles it may grant. It never defines one, so a typo in a file
    cannot invent a privilege."""
    wanted = {role for _, account in accounts for role in account.roles}
    known = await users.existing_roles(wanted) if wanted else set()
    return [
        RowProblem(number, str(UnknownRole(role)))
        for number, account in accounts
        for role in sorted(account.roles - known)
    ]


# -- reading ---------------------------------------------------------------------------------


def _column_problem(names: Sequence[str]) -> str | None:
    """What is wrong with a CSV header or the keys of a JSON object, if anything."""
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        # Shown cleaned and cut: the file is not ours, the terminal is.
        shown = ", ".join(repr(clean_text(name[:40])) for name in unknown[:3])
        return f"unknown column {shown} (the columns are {', '.join(COLUMNS)})"
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return f"column {repeated[0]} is named twice"
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        return f"no {' and no '.join(missing)} column"
    return None


def _split_roles(value: str) -> tuple[str, ...]:
    """Roles written as one text: separated by commas, spaces or both."""
    return tuple(part for part in value.replace(",", " ").split() if part)


def _flag(value: str) -> bool:
    word = value.strip().lower()
    if not word or word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("is_active must be true or false (or 1/0, yes/no)")


def _csv_records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record with the line it starts on; blank lines are skipped."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                yield start, record
            start = reader.line_num + 1
    except csv.Error:
        raise ImportFileError(f"not valid CSV (line {reader.line_num})") from None


def _parse_csv(text: str) -> UserFile:
    records = _csv_records(text)
    header_record = next(records, None)
    if header_record is None:
        return UserFile(())
    header = [name.strip().lower() for name in header_record[1]]
    problem = _column_problem(header)
    if problem is not None:
        raise ImportFileError(f"CSV header: {problem}")
    rows: list[SourceRow] = []
    problems: list[RowProblem] = []
    for number, record in records:
        if len(record) != len(header):
            problems.append(
                RowProblem(number, f"{len(record)} fields where the header has {len(header)}")
            )
            continue
        values = dict(zip(header, record, strict=True))
        try:
            rows.append(
                SourceRow(
                    row=number,
                    username=values["username"],
                    password_hash=values["password_hash"].strip(),
                    email=values.get("email") or None,
                    roles=_split_roles(values.get("roles", "")),
                    is_active=_flag(values.get("is_active", "")),
                )
            )
        except ValueError as error:
            problems.append(RowProblem(number, str(error)))
    return UserFile(tuple(rows), tuple(problems))


def _parse_json(text: str) -> UserFile:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportFileError(
            f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    if not isinstance(items, list):
        raise ImportFileError("the JSON file must hold a list of user objects")
    rows: list[SourceRow] = []
    problems: list[RowProblem] = []
    for number, item in enumerate(items, start=1):
        try:
            rows.append(_json_row(number, item))
        except ValueError as error:
            problems.append(RowProblem(number, str(error)))
    return UserFile(tuple(rows), tuple(problems))


def _json_row(number: int, item: object) -> SourceRow:
    if not isinstance(item, dict):
        raise ValueError("not an object")
    problem = _column_problem(list(item))
    if problem is not None:
        raise ValueError(problem)
    username, password_hash = item.get("username"), item.get("password_hash")
    email, roles, active = item.get("email"), item.get("roles"), item.get("is_active")
    if not isinstance(username, str):
        raise ValueError("username must be a string")
    if not isinstance(password_hash, str):
        raise ValueError("password_hash must be a string")
    if email is not None and not isinstance(email, str):
        raise ValueError("email must be a string or null")
    if isinstance(roles, str):
        roles = _split_roles(roles)
    elif roles is None:
        roles = ()
    elif not (isinstance(roles, list) and all(isinstance(role, str) for role in roles)):
        raise ValueError("roles must be a list of strings, a string or null")
    if active is not None and not isinstance(active, bool):
        raise ValueError("is_active must be true, false or null")
    return SourceRow(
        row=number,
        username=username,
        password_hash=password_hash.strip(),
        email=email or None,
        roles=tuple(roles),
        is_active=True if active is None else active,
    )


__all__ = [
    "COLUMNS",
    "FORMATS",
    "Format",
    "ImportFileError",
    "ImportReport",
    "RowProblem",
    "SourceRow",
    "UserFile",
    "format_of",
    "import_users",
    "parse_users",
]
