"""The app `bench/run.py` and `bench/scaling.py` serve: the reference app, and a bare FastAPI
route beside it in the same process.

    PYTHONPATH=bench bastion serve --app bench_app:create

`/bare` goes to a plain `FastAPI()` app with one route, outside Bastion's middleware: what a
user compares Bastion with. Every other path (and the lifespan, which opens Bastion's
services) goes to the reference app, `bastion.webapp.app.create_app`. Both sit behind the
same uvicorn server, so the HTTP parsing, the access log and the event loop are shared and
the ratio of a route to `/bare` is Bastion's own cost.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from bastion.webapp.app import create_app

BARE_PATH = "/bare"

Scope = dict[str, Any]


class Dispatch:
    """An ASGI app: `/bare` to the plain FastAPI app, everything else to the reference app."""

    def __init__(self, bare: FastAPI, reference: FastAPI) -> None:
        self.bare = bare
        self.reference = reference

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == BARE_PATH:
            await self.bare(scope, receive, send)
        else:
            await self.reference(scope, receive, send)


def bare_app() -> FastAPI:
    """A plain FastAPI app, one route answering what the reference app's /healthz does."""
    app = FastAPI()

    @app.get(BARE_PATH)
    async def bare() -> dict[str, str]:
        return {"status": "ok"}

    return app


def create() -> Dispatch:
    """The factory `bastion serve --app bench_app:create` calls (a function: a factory)."""
    return Dispatch(bare_app(), create_app())
