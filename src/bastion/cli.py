"""The ``bastion`` command.

Exit status: 0 on success, 1 on a handled error (one line on stderr, never a traceback),
2 on a usage error.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from bastion.exceptions import BastionError, StoreUnavailable, UserError
from bastion.settings import Settings

T = TypeVar("T")
DEFAULT_APP = "bastion.webapp.app:create_app"

app = typer.Typer(
    name="bastion",
    help="Bastion: sign-in, sessions and tokens for FastAPI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
users_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database.", no_args_is_help=True)
sessions_app = typer.Typer(help="Inspect and end sessions.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage JWT signing keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(sessions_app, name="sessions")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")


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


def run(work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Open the services, run ``work(services)``, close them; errors become one line."""
    from bastion.services import migrate_embedded, open_services

    settings = load_settings()

    async def main() -> T:
        await migrate_embedded(settings)
        services = await open_services(settings)
        try:
            return await work(services)
        finally:
            await services.aclose()

    return guarded(main)


def guarded(main: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except BastionError as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted")
    except typer.Exit:
        raise
    except Exception as error:
        from sqlalchemy.exc import ProgrammingError

        if isinstance(error, ProgrammingError):
            # Tables missing: a PostgreSQL database that was never migrated.
            fail("the database is not migrated; run `bastion db upgrade`")
        if os.environ.get("BASTION_DEBUG"):
            raise
        fail(f"unexpected {type(error).__name__}; set BASTION_DEBUG=1 for details")


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


# ---- users --------------------------------------------------------------------------


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="User name (kept as typed, matched case-blind).")],
    email: Annotated[str | None, typer.Option(help="E-mail address.")] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="Role; repeat for more.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user."""
    load_settings()  # a bad setting is reported before the prompt
    password = read_password(password_stdin)

    async def work(services: Any) -> None:
        user = await services.accounts.create(name, password, email=email, roles=role or ())
        typer.echo(f"created user {user.username}")

    run(work)


@users_app.command("list")
def users_list() -> None:
    """List users."""

    async def work(services: Any) -> None:
        users = await services.users.list_users(limit=10_000)
        for user in users:
            state = "active" if user.is_active else "disabled"
            roles = ",".join(sorted(user.roles)) or "-"
            typer.echo(f"{user.username}\t{user.email or '-'}\t{state}\t{roles}")

    run(work)


async def _require_user(services: Any, name: str) -> Any:
    user = await services.users.get_by_username(name)
    if user is None:
        raise UserError(f"no such user: {name}")
    return user


@users_app.command("set-password")
def users_set_password(
    name: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set a user's password, end all of that user's sessions and their login back-off."""
    load_settings()  # a bad setting is reported before the prompt
    password = read_password(password_stdin)

    async def work(services: Any) -> None:
        user = await _require_user(services, name)
        # The same path as the web: the password policy, then sessions, their tokens and
        # cached entries all end.
        ended = await services.accounts.change_password(user.id, password)
        typer.echo(f"password set for {user.username}; {len(ended)} session(s) ended")

    run(work)


def _set_active(name: str, active: bool) -> None:
    async def work(services: Any) -> None:
        user = await _require_user(services, name)
        ended = await services.accounts.set_active(user.id, active)
        word = "enabled" if active else f"disabled; {len(ended)} session(s) ended"
        typer.echo(f"{user.username} {word}")

    run(work)


@users_app.command("disable")
def users_disable(name: str) -> None:
    """Disable a user and end all of that user's sessions."""
    _set_active(name, False)


@users_app.command("enable")
def users_enable(name: str) -> None:
    """Enable a disabled user."""
    _set_active(name, True)


@users_app.command("delete")
def users_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a user and end all of that user's sessions."""
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


# ---- sessions -------------------------------------------------------------------------


def _stamp(timestamp: float) -> str:
    from bastion.clock import to_datetime

    return to_datetime(timestamp).strftime("%Y-%m-%d %H:%M:%S")


@sessions_app.command("list")
def sessions_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's sessions.")] = None,
) -> None:
    """List live sessions: id, user, kind, address, device, created, last seen."""
    from bastion.devices import describe

    async def work(services: Any) -> None:
        if user is None:
            sessions = await services.sessions.list_all()
        else:
            record = await _require_user(services, user)
            sessions = await services.sessions.list_for_user(record.id)
        for session in sessions:
            typer.echo(
                "\t".join(
                    [
                        session.key,
                        session.username or str(session.user_id),
                        session.kind,
                        session.ip or "-",
                        describe(session.user_agent),
                        _stamp(session.created_at),
                        _stamp(session.last_seen_at),
                    ]
                )
            )

    run(work)


@sessions_app.command("revoke")
def sessions_revoke(session_id: Annotated[str, typer.Argument(help="Session id.")]) -> None:
    """End one session."""

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
def sessions_revoke_all(name: str) -> None:
    """End every session of a user."""

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
        for key in keyset.keys:
            retired = _stamp(key.retired_at) if key.retired_at else "-"
            marker = "signing" if key.kid == keyset.signing_kid else "verify-only"
            typer.echo(f"{key.kid}\t{key.alg}\t{_stamp(key.created_at)}\t{retired}\t{marker}")

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
        from sqlalchemy import exc as sa_exc

        if settings.resolved_database_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            await upgrade(settings.resolved_database_url)
        except (OSError, TimeoutError, sa_exc.OperationalError, sa_exc.InterfaceError):
            raise StoreUnavailable("database") from None
        typer.echo("database is up to date")

    guarded(main)


# ---- serving --------------------------------------------------------------------------


def _uvicorn_target(target: str) -> tuple[Any, bool]:
    """The app to serve and whether it is a factory (a function returning the app)."""
    from uvicorn.importer import ImportFromStringError, import_from_string

    try:
        obj = import_from_string(target)
    except ImportFromStringError as error:
        fail(str(error).splitlines()[0])
    return target, inspect.isfunction(obj)


def _serve(host: str, port: int, workers: int, target: str, reload: bool) -> None:
    import uvicorn

    app_ref, factory = _uvicorn_target(target)
    uvicorn.run(
        app_ref,
        factory=factory,
        host=host,
        port=port,
        workers=workers if not reload else None,
        reload=reload,
        # Bastion's own middleware decides which proxies to believe (BASTION_TRUSTED_PROXIES);
        # uvicorn's default of trusting 127.0.0.1 is switched off.
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        date_header=True,
        log_level="info",
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
    app_path: Annotated[str, typer.Option("--app", help="MODULE:ATTR of the app.")] = DEFAULT_APP,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Run the reference app (or any Bastion app) under uvicorn."""
    settings = load_settings()
    from bastion.services import migrate_embedded

    # Before uvicorn starts its workers: a problem is one line here, and the workers'
    # own start-up migrations find nothing left to do.
    guarded(lambda: migrate_embedded(settings))
    _serve(host, port, workers, app_path, reload)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
) -> None:
    """Serve the reference app with a demo admin account and a fresh random password."""
    password = secrets.token_urlsafe(12)
    username = "admin"

    async def work(services: Any) -> None:
        hashed = await services.passwords.hash_async(password)
        user = await services.users.get_by_username(username)
        if user is None:
            user = await services.users.create_user(username, hashed, roles=("admin",))
        else:
            await services.users.set_password_hash(user.id, hashed)
            await services.users.set_active(user.id, True)
            await services.users.set_roles(user.id, {*user.roles, "admin"})
            await services.sessions.end_all_for_user(user.id)

    run(work)
    typer.echo(
        f"\nBastion demo is starting\n  URL:      http://{host}:{port}/\n"
        f"  user:     {username}\n  password: {password}\n"
        f"  (generated {datetime.now().astimezone():%Y-%m-%d %H:%M}; a new one each start)\n"
    )
    _serve(host, port, 1, DEFAULT_APP, False)


# ---- checks ---------------------------------------------------------------------------


@app.command()
def check(
    deploy: Annotated[
        bool, typer.Option("--deploy", help="Also run the production deployment checks.")
    ] = False,
    workers: Annotated[
        int, typer.Option(help="Worker processes the deployment will run.", min=1)
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
        if os.environ.get("BASTION_DEBUG"):
            raise
        typer.echo(f"error: unexpected {type(error).__name__}", err=True)
        sys.exit(1)
