"""Lifecycle hooks (docs/hooks.md): the application hears of sign-ups and sign-ins."""

# --8<-- [start:hooks]
import logging

from fastapi import FastAPI

from bastion.fastapi import install
from bastion.hooks import Hooks, Registered, SignedIn, SignInFailed
from bastion.settings import Settings

log = logging.getLogger("myapp")
recent_sign_ins: list[str] = []


async def welcome(event: Registered) -> None:
    # The account is committed: a query for event.user_id finds it.
    log.info("new account %s (id %s)", event.username, event.user_id)


async def remember_sign_in(event: SignedIn) -> None:
    recent_sign_ins.append(f"{event.username} via {event.channel}/{event.method}")


async def warn_of_failure(event: SignInFailed) -> None:
    # What was typed as the user name is untrusted input: log it with %r.
    log.warning("sign-in refused for %r from %s: %s", event.username, event.ip, event.reason)


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI()
    hooks = Hooks(
        on_registered=welcome,
        on_signed_in=remember_sign_in,
        on_sign_in_failed=warn_of_failure,
    )
    install(app, settings, hooks=hooks)
    return app
    # --8<-- [end:hooks]
