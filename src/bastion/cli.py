"""The ``bastion`` command.

Exit status: 0 on success, 1 on a handled error (one line on stderr, never a traceback),
2 on a usage error. A database error names its cause (``BASTION_DEBUG=1`` adds the driver's
words on the same line). List commands print tab-separated columns under a header row.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import typer

from bastion.exceptions import BastionError, StoreUnavailable, UserError
from bastion.settings import Settings

T = TypeVar("T")
DEFAULT_APP = "bastion.webapp.app:create_app"
DEMO_EMAIL = "admin@example.com"

# Plain help (click's layout): Rich panels label every option with its Python type, so a
# flag such as --yes reads "--yes <bool>" as if it took a value. Options that take a value
# name it with a metavar (--port PORT).
app = typer.Typer(
    name="bastion",
    help="Bastion: sign-in, sessions and tokens for FastAPI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
users_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True, rich_markup_mode=None)
db_app = typer.Typer(help="Manage the database.", no_args_is_help=True, rich_markup_mode=None)
sessions_app = typer.Typer(
    help="Inspect and end sessions.", no_args_is_help=True, rich_markup_mode=None
)
keys_app = typer.Typer(help="Manage JWT signing keys.", no_args_is_help=True, rich_markup_mode=None)
roles_app = typer.Typer(
    help="Manage roles: a role can be granted once it is defined.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(users_app, name="users")
app.add_typer(roles_app, name="roles")
app.add_typer(sessions_app, name="sessions")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
mail_app = typer.Typer(help="Check outgoing mail.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(mail_app, name="mail")


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def load_settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        fail(f"invalid setting {where}: {first['msg']}")


def refuse_process_local_sessions(settings: Settings) -> None:
    """Stop a command that ends or lists sessions before it changes anything, when the
    session store is this process's own memory: it would see none of the server's sessions
    and report, say, a disabled user with no session ended while their sessions live on."""
    if settings.store_kind("session") == "memory":
        fail(
            "sessions are kept in the server's own memory (BASTION_SESSION_STORE=memory), "
            "out of this command's reach; use the sql or redis session store, or the admin "
            "pages of the running server"
        )


def run(work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Open the services, run ``work(services)``, close them; errors become one line."""
    from bastion.services import open_services

    settings = load_settings()

    async def main() -> T:
        await ready_database(settings)
        services = await open_services(settings)
        try:
            return await work(services)
        finally:
            await services.aclose()

    return guarded(main, settings)


async def ready_database(settings: Settings) -> None:
    """Migrate the embedded SQLite database; check that any other one answers and is
    migrated (it is migrated only by ``bastion db upgrade``), so that a problem is named
    before the command does anything."""
    from bastion.dberrors import NOT_MIGRATED
    from bastion.exceptions import ConfigError
    from bastion.migrate import database_revision, head_revision
    from bastion.services import is_embedded, migrate_embedded

    if is_embedded(settings):
        await migrate_embedded(settings)
        return
    url = settings.resolved_database_url
    if await database_revision(url, give_up_after=settings.store_timeout) != head_revision():
        raise ConfigError(NOT_MIGRATED)


def guarded(main: Callable[[], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run ``main``; a handled error becomes one line on stderr and exit status 1."""
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        fail("interrupted")
    except Exception as error:
        fail(_one_line(error, settings))


def _one_line(error: Exception, settings: Settings | None) -> str:
    """What went wrong, in words an operator can act on; ``BASTION_DEBUG`` adds the
    driver's own words (never a password of the database URL, never a traceback)."""
    from bastion.dberrors import detail, explain, redact

    debug = settings.debug if settings is not None else _debug_from_environment()
    url = settings.resolved_database_url if settings is not None else ""
    if isinstance(error, StoreUnavailable):
        extra = redact(error.detail, url) if error.detail else ""
        return f"{error} ({extra})" if debug and extra else str(error)
    if isinstance(error, BastionError):
        return str(error)
    line = None if settings is None else explain(error, url, timeout=settings.store_timeout)
    if line is None:
        if debug:
            raise error  # not a database problem: the traceback is what a developer needs
        return f"unexpected {type(error).__name__}; set BASTION_DEBUG=1 for details"
    return f"{line} [{detail(error, url)}]" if debug else line


def _debug_from_environment() -> bool:
    # Settings could not be loaded: read the switch the way pydantic reads booleans.
    value = os.environ.get("BASTION_DEBUG", "").strip().lower()
    return value in {"1", "on", "t", "true", "y", "yes"}


def read_password(from_stdin: bool) -> str:
    """One line from stdin (without its newline), or a twice-typed prompt without echo.

    The password policy is not checked here: the account method that sets the password
    checks it, with the user's name, as every other way of setting a password does."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
    else:
        try:
            password = typer.prompt(
                "Password",
                hide_input=True,
                confirmation_prompt=True,
                default="",
                show_default=False,
            )
        except typer.Abort:  # end of input or Ctrl-C at the prompt
            fail("no password entered")
    return password


def print_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Tab-separated columns under a header row (``cut -f`` and ``tail -n +2`` friendly)."""
    for row in (header, *rows):
        typer.echo("\t".join(row))


# ---- users --------------------------------------------------------------------------

UserName = Annotated[str, typer.Argument(metavar="NAME", help="User name (matched case-blind).")]


@users_app.command("create")
def users_create(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="User name (kept as typed, matched case-blind).")
    ],
    email: Annotated[str | None, typer.Option(metavar="EMAIL", help="E-mail address.")] = None,
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role", metavar="ROLE", help="A defined role (bastion roles list); repeat for more."
        ),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user."""
    load_settings()  # a bad setting is reported before the prompt

    async def work(services: Any) -> None:
        # An undefined role is refused before the password is typed.
        await _require_defined_roles(services, role or ())
        password = read_password(password_stdin)
        user = await services.accounts.create(name, password, email=email, roles=role or ())
        typer.echo(f"created user {user.username}")

    run(work)


@users_app.command("list")
def users_list() -> None:
    """List users."""

    async def work(services: Any) -> None:
        users = await services.users.list_users(limit=10_000)
        print_table(
            ("NAME", "EMAIL", "STATE", "ROLES"),
            (
                (
                    user.username,
                    user.email or "-",
                    "active" if user.is_active else "disabled",
                    ",".join(sorted(user.roles)) or "-",
                )
                for user in users
            ),
        )

    run(work)


async def _require_defined_roles(services: Any, names: Iterable[str]) -> None:
    from bastion.users.roles import UnknownRole, check_role_name

    defined = {role.name for role in await services.users.list_roles()}
    for name in names:
        if name.strip() not in defined:
            check_role_name(name)  # a name no role can have says so, before "not defined"
            raise UnknownRole(name)


async def _require_user(services: Any, name: str) -> Any:
    user = await services.users.get_by_username(name)
    if user is None:
        raise UserError(f"no such user: {name}")
    return user


@users_app.command("set-password")
def users_set_password(
    name: UserName,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set a user's password, end all of that user's sessions and their login back-off."""
    refuse_process_local_sessions(load_settings())  # a bad setting is reported before the prompt
    password = read_password(password_stdin)

    async def work(services: Any) -> None:
        user = await _require_user(services, name)
        # The same path as the web: the password policy, then sessions, their tokens and
        # cached entries all end.
        ended = await services.accounts.change_password(user.id, password)
        typer.echo(f"password set for {user.username}; {len(ended)} session(s) ended")

    run(work)


def _set_active(name: str, active: bool) -> None:
    if not active:
        refuse_process_local_sessions(load_settings())

    async def work(services: Any) -> None:
        user = await _require_user(services, name)
        ended = await services.accounts.set_active(user.id, active)
        word = "enabled" if active else f"disabled; {len(ended)} session(s) ended"
        typer.echo(f"{user.username} {word}")

    run(work)


@users_app.command("disable")
def users_disable(name: UserName) -> None:
    """Disable a user and end all of that user's sessions."""
    _set_active(name, False)


@users_app.command("enable")
def users_enable(name: UserName) -> None:
    """Enable a disabled user."""
    _set_active(name, True)


@users_app.command("delete")
def users_delete(
    name: UserName,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a user and end all of that user's sessions."""
    refuse_process_local_sessions(load_settings())
    if not yes:
        try:
            confirmed = typer.confirm(f"Delete user {name}?", default=False)
        except typer.Abort:  # end of input or Ctrl-C at the prompt
            confirmed = False
        if not confirmed:
            fail("not confirmed")

    async def work(services: Any) -> None:
        user = await _require_user(services, name)
        await services.accounts.delete(user.id)
        typer.echo(f"deleted user {user.username}")

    run(work)


@users_app.command("reset-link")
def users_reset_link(
    name: UserName,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            metavar="URL",
            help="The site's address, e.g. https://example.com (default: BASTION_PUBLIC_URL).",
        ),
    ] = None,
) -> None:
    """Print a link with which the user chooses a new password (for sites without email):
    it works once, for BASTION_EMAIL_TOKEN_TTL seconds, and dies with any change of the
    account's password, address or state."""
    if base_url is not None:
        # Checked like the setting it stands in for, with the same message.
        os.environ["BASTION_PUBLIC_URL"] = base_url
    base = load_settings().public_url
    if not base:
        fail("set BASTION_PUBLIC_URL or pass --base-url with the site's address")

    async def work(services: Any) -> str:
        user = await _require_user(services, name)
        link: str = await services.recovery.reset_link(user, base, detail={"by": "cli"})
        return link

    typer.echo(run(work))


@users_app.command("reset-mfa")
def users_reset_mfa(name: UserName) -> None:
    """Remove a user's second factors (authenticator app, passkeys, recovery codes) and
    end all of that user's sessions: for a user who lost every factor. They sign in with
    their password alone and set up new factors (at once, when BASTION_MFA asks for one)."""
    refuse_process_local_sessions(load_settings())

    async def work(services: Any) -> None:
        user = await _require_user(services, name)
        removed = await services.mfa.remove_all(user.id, by="cli")
        typer.echo(
            f"removed {removed.describe()} of {user.username}; "
            f"{removed.sessions_ended} session(s) ended"
        )

    run(work)


@users_app.command("import")
def users_import(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="CSV with a header row, or JSON: a list of user objects."
        ),
    ],
    format: Annotated[
        Literal["csv", "json"] | None,
        typer.Option("--format", metavar="FORMAT", help="csv or json (default: the extension)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and report; write nothing.")
    ] = False,
) -> None:
    """Import users with their password hashes (bcrypt, Argon2, Django's PBKDF2 and bcrypt),
    re-hashed to Argon2id at each user's next sign-in. All rows or none: every refused row
    is listed with its number, and then nothing is imported."""
    from bastion.users.importer import ImportFileError, format_of, import_users, parse_users

    load_settings()
    try:
        kind = format_of(file.name, format)
        source = parse_users(file.read_bytes(), kind)
    except ImportFileError as error:
        fail(f"{file.name}: {error}")
    except OSError as error:
        fail(f"cannot read {file.name}: {error.strerror or type(error).__name__}")
    if source.count == 0:
        fail(f"{file.name}: no users in the file")

    async def work(services: Any) -> Any:
        return await import_users(
            source,
            users=services.users,
            passwords=services.passwords,
            audit=services.audit,
            dry_run=dry_run,
            detail={"by": "cli", "format": kind},
        )

    report = run(work)
    for problem in report.problems:  # the report, on stdout; the verdict is the error line
        typer.echo(str(problem))
    if not report.accepted:
        refused = len({problem.row for problem in report.problems})
        fail(f"{refused} of {report.rows} row(s) refused; nothing imported")
    if dry_run:
        typer.echo(f"dry run: {report.rows} user(s) would be imported; nothing written")
    else:
        typer.echo(
            f"imported {report.imported} user(s); each signs in with their old password, "
            "re-hashed to Argon2id then"
        )


# ---- roles ----------------------------------------------------------------------------

RoleName = Annotated[str, typer.Argument(metavar="NAME", help="Role name.")]


@roles_app.command("list")
def roles_list() -> None:
    """List the defined roles, how many users hold each, and their descriptions."""

    async def work(services: Any) -> None:
        roles = await services.users.list_roles()
        print_table(
            ("NAME", "USERS", "DESCRIPTION"),
            ((role.name, str(role.holders), role.description or "-") for role in roles),
        )

    run(work)


@roles_app.command("create")
def roles_create(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="Lowercase letters a-z, digits, '-' and '_' (e.g. staff)."
        ),
    ],
    description: Annotated[
        str | None,
        typer.Option(metavar="TEXT", help="What the role allows (shown on the admin pages)."),
    ] = None,
) -> None:
    """Define a role, so that users can be given it."""

    async def work(services: Any) -> None:
        role = await services.accounts.create_role(name, description)
        typer.echo(f"created role {role.name}")

    run(work)


@roles_app.command("delete")
def roles_delete(
    name: RoleName,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Take the role from the users holding it first (their sessions end)."
        ),
    ] = False,
) -> None:
    """Delete a role that nobody holds (with --force, one that users hold). Not admin."""
    from bastion.users.roles import RoleInUse

    if force:
        refuse_process_local_sessions(load_settings())

    async def work(services: Any) -> None:
        try:
            taken = await services.accounts.delete_role(name, force=force)
        except RoleInUse as error:
            raise UserError(f"{error} --force takes it from them (their sessions end).") from None
        ended = f"; taken from {taken} user(s), their sessions ended" if taken else ""
        typer.echo(f"deleted role {name}{ended}")

    run(work)


# ---- sessions -------------------------------------------------------------------------


def _stamp(timestamp: float) -> str:
    from bastion.clock import to_datetime

    return to_datetime(timestamp).strftime("%Y-%m-%d %H:%M:%S")


@sessions_app.command("list")
def sessions_list(
    user: Annotated[
        str | None, typer.Option("--user", metavar="NAME", help="Only this user's sessions.")
    ] = None,
) -> None:
    """List live sessions: id, user, kind, address, device, created, last seen (UTC)."""
    from bastion.devices import describe

    refuse_process_local_sessions(load_settings())

    async def work(services: Any) -> None:
        if user is None:
            sessions = await services.sessions.list_all()
        else:
            record = await _require_user(services, user)
            sessions = await services.sessions.list_for_user(record.id)
        print_table(
            ("ID", "USER", "KIND", "ADDRESS", "DEVICE", "CREATED", "LAST SEEN"),
            (
                (
                    session.key,
                    session.username or str(session.user_id),
                    session.kind,
                    session.ip or "-",
                    describe(session.user_agent),
                    _stamp(session.created_at),
                    _stamp(session.last_seen_at),
                )
                for session in sessions
            ),
        )

    run(work)


@sessions_app.command("revoke")
def sessions_revoke(
    session_id: Annotated[
        str, typer.Argument(metavar="ID", help="Session id, as `sessions list` shows it.")
    ],
) -> None:
    """End one session."""
    refuse_process_local_sessions(load_settings())

    async def work(services: Any) -> None:
        session = await services.sessions.get(session_id)
        if session is None or not await services.sessions.end(session.key):
            raise UserError("no such session")
        await services.users.add_audit(
            "session.revoked",
            user_id=session.user_id,
            session_ref=session.ref,
            detail={"by": "cli"},
        )
        typer.echo(f"session {session.ref}... ended")

    run(work)


@sessions_app.command("revoke-all")
def sessions_revoke_all(name: UserName) -> None:
    """End every session of a user."""
    refuse_process_local_sessions(load_settings())

    async def work(services: Any) -> None:
        user = await _require_user(services, name)
        ended = await services.sessions.end_all_for_user(user.id)
        await services.users.add_audit(
            "session.revoked", user_id=user.id, detail={"by": "cli", "count": len(ended)}
        )
        typer.echo(f"{len(ended)} session(s) of {user.username} ended")

    run(work)


# ---- keys -----------------------------------------------------------------------------


def _keys_guarded(action: Callable[[Settings], None]) -> None:
    settings = load_settings()
    try:
        action(settings)
    except BastionError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot use the key file: {error.strerror or type(error).__name__}")


@keys_app.command("list")
def keys_list() -> None:
    """List the keys of the JWK set: kid, algorithm, created, retired, signing."""
    from bastion import keys

    def action(settings: Settings) -> None:
        path = settings.resolved_jwt_keys_file
        keyset = keys.load_or_create(path, settings.jwt_algorithm)
        print_table(
            ("KID", "ALG", "CREATED", "RETIRED", "USE"),
            (
                (
                    key.kid,
                    key.alg,
                    _stamp(key.created_at),
                    _stamp(key.retired_at) if key.retired_at else "-",
                    "signing" if key.kid == keyset.signing_kid else "verify-only",
                )
                for key in keyset.keys
            ),
        )

    _keys_guarded(action)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new signing key; older keys keep verifying until pruned."""
    from bastion import keys

    def action(settings: Settings) -> None:
        path = settings.resolved_jwt_keys_file
        keys.load_or_create(path, settings.jwt_algorithm)
        keyset = keys.rotate(path, settings.jwt_algorithm)
        typer.echo(f"new signing key {keyset.signing_kid} ({keyset.signing_key.alg})")

    _keys_guarded(action)


@keys_app.command("prune")
def keys_prune() -> None:
    """Remove retired keys older than the longest token lifetime."""
    from bastion import keys

    def action(settings: Settings) -> None:
        path = settings.resolved_jwt_keys_file
        keys.load_or_create(path, settings.jwt_algorithm)
        removed = keys.prune(path, settings.access_token_ttl)
        typer.echo(
            f"removed {len(removed)} key(s)" + (": " + ", ".join(removed) if removed else "")
        )

    _keys_guarded(action)


# ---- database -------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations."""
    from bastion.migrate import upgrade

    settings = load_settings()

    async def main() -> None:
        await upgrade(settings.resolved_database_url)
        typer.echo("database is up to date")

    guarded(main, settings)


# ---- mail ------------------------------------------------------------------------------


@mail_app.command("test")
def mail_test(
    address: Annotated[
        str, typer.Argument(metavar="ADDRESS", help="Where to send the test message.")
    ],
) -> None:
    """Send the test message now through the configured backend; report where it went or
    why it could not go (the server's own words included)."""
    import logging

    from bastion.mail import DeliveryFailed, build_mailer

    settings = load_settings()

    async def main() -> str:
        mailer = build_mailer(settings)
        message = mailer.render("test", to=address, context={})
        # The console backend's output is a log record: show it on stderr.
        handler = logging.StreamHandler(sys.stderr)
        mail_log = logging.getLogger("bastion.mail")
        mail_log.addHandler(handler)
        mail_log.setLevel(logging.INFO)
        try:
            await mailer.deliver_now(message)
        except DeliveryFailed as error:
            said = " ".join(error.detail.split())  # a multi-line reply, on one line
            fail(f"could not send: {error.reason}" + (f" ({said})" if said else ""))
        finally:
            mail_log.removeHandler(handler)
        return mailer.backend.describe()

    where = guarded(main, settings)
    typer.echo(f"test message to {address}: {where}")


# ---- serving --------------------------------------------------------------------------


def _uvicorn_target(target: str) -> None:
    """Check that the app to serve imports (from the working folder, like uvicorn)."""
    from uvicorn.importer import ImportFromStringError, import_from_string

    # As with `uvicorn module:app`: the application's modules are found from the working
    # folder (the console script's own path holds only its bin folder). uvicorn's worker
    # and reload processes inherit this path.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        import_from_string(target)
    except ImportFromStringError as error:
        fail(str(error).splitlines()[0])


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with the tokens of recovery links hidden in its access log."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["bastion_tokens"] = {"()": "bastion.recovery.TokenPathFilter"}
    config["handlers"]["access"].setdefault("filters", []).append("bastion_tokens")
    return config


def _serve(
    host: str,
    port: int,
    workers: int,
    target: str,
    reload: bool,
    *,
    gc_tuning: bool = True,
    access_log: bool = True,
) -> None:
    import uvicorn

    from bastion.asgi import runtime

    _uvicorn_target(target)  # a target that does not import is one line here
    # Every worker (and reload) process runs runtime.served_app, which reads these: it
    # loads the target there and tunes the collector once the app has started.
    os.environ[runtime.TARGET_ENV] = target
    os.environ[runtime.GC_TUNING_ENV] = "1" if gc_tuning else "0"
    uvicorn.run(
        "bastion.asgi.runtime:served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers if not reload else None,
        reload=reload,
        # A line per request costs the server about 30 us of CPU and a write (measured
        # under wrk: /healthz 7,800 -> 10,300 requests/s without it), so it can be dropped
        # where the proxy in front logs requests anyway.
        access_log=access_log,
        # Bastion's own middleware decides which proxies to believe (BASTION_TRUSTED_PROXIES);
        # uvicorn's default of trusting 127.0.0.1 is switched off.
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        date_header=True,
        log_level="info",
        log_config=_log_config(),
    )


Host = Annotated[str, typer.Option(metavar="HOST", help="Address to listen on.")]
Port = Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.", min=1, max=65535)]


@app.command()
def serve(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    workers: Annotated[int, typer.Option(metavar="N", help="Worker processes.", min=1)] = 1,
    app_path: Annotated[
        str, typer.Option("--app", metavar="MODULE:ATTR", help="The app (or app factory).")
    ] = DEFAULT_APP,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    access_log: Annotated[
        bool, typer.Option(help="Log a line per request (uvicorn's access log).")
    ] = True,
    gc_tuning: Annotated[
        bool,
        typer.Option(
            help="Once the app has started, freeze the objects alive (gc.freeze) and collect "
            "garbage less often: full collections no longer pause every request for the "
            "whole heap's walk."
        ),
    ] = True,
) -> None:
    """Run the reference app (or any Bastion app) under uvicorn."""
    settings = load_settings()
    from bastion.services import migrate_embedded

    # Before uvicorn starts its workers: a problem is one line here, and the workers'
    # own start-up migrations find nothing left to do.
    guarded(lambda: migrate_embedded(settings), settings)
    _serve(host, port, workers, app_path, reload, gc_tuning=gc_tuning, access_log=access_log)


@app.command()
def demo(
    host: Host = "127.0.0.1",
    port: Port = 8000,
) -> None:
    """Serve the reference app with a demo admin account and a fresh random password.
    Mail goes to files in <data dir>/outbox/ unless BASTION_EMAIL_BACKEND says otherwise."""
    from bastion.mail.backends import OUTBOX_FOLDER

    password = secrets.token_urlsafe(12)
    username = "admin"
    if load_settings().email_backend is None:
        # Set for this process and the server it runs: reset links can be tried at once.
        os.environ["BASTION_EMAIL_BACKEND"] = "file"
    settings = load_settings()

    async def work(services: Any) -> None:
        # Through Accounts like every other password: one policy, sessions ended, audited.
        accounts = services.accounts
        user = await services.users.get_by_username(username)
        if user is None:
            await accounts.create(username, password, email=DEMO_EMAIL, roles=("admin",))
            return
        if user.email is None:  # made by an older demo: the reset flow needs an address
            await accounts.change_email(user, DEMO_EMAIL)
        await accounts.change_password(user.id, password)
        await accounts.set_active(user.id, True)
        await accounts.set_roles(user.id, {*user.roles, "admin"})

    run(work)
    backend = settings.resolved_email_backend
    if backend == "file":
        outbox = (settings.data_dir / OUTBOX_FOLDER).resolve()
        mail = f"files in {outbox}/ (one .eml file per message)"
    elif backend == "console":
        mail = "printed in this terminal"
    else:
        mail = f"sent through {settings.smtp_host}:{settings.smtp_port}"
    typer.echo(
        f"\nBastion demo is starting\n  URL:      http://{host}:{port}/\n"
        f"  user:     {username}\n  e-mail:   {DEMO_EMAIL}\n  password: {password}\n"
        f"  (generated {datetime.now().astimezone():%Y-%m-%d %H:%M}; a new one each start)\n"
        f"  mail:     {mail}\n"
    )
    _serve(host, port, 1, DEFAULT_APP, False)


# ---- checks ---------------------------------------------------------------------------


@app.command()
def check(
    deploy: Annotated[
        bool, typer.Option("--deploy", help="Also run the production deployment checks.")
    ] = False,
    workers: Annotated[
        int, typer.Option(metavar="N", help="Worker processes the deployment will run.", min=1)
    ] = 1,
) -> None:
    """Print what is unsafe in the current settings; with --deploy exit 1 if anything is."""
    from bastion.checks import find_problems

    findings = find_problems(load_settings(), deploy=deploy, workers=workers)
    for finding in findings:
        typer.echo(str(finding))
    if not findings:
        typer.echo("no problems found")
    elif deploy:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point: handled errors are one line on stderr, never a traceback."""
    try:
        app()
    except BastionError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
    except Exception as error:
        if _debug_from_environment():
            raise
        typer.echo(f"error: unexpected {type(error).__name__}", err=True)
        sys.exit(1)
