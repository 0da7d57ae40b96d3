"""The reference app: the seed's system, done right, on Bastion's public API only."""

from __future__ import annotations

from fastapi import FastAPI

from bastion import __version__
from bastion.fastapi import install
from bastion.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the reference application (``bastion serve`` runs this)."""
    app = FastAPI(
        title="Bastion reference app",
        version=__version__,
        description="Sign-in, sessions, CSRF, JWT and per-user caching, correct by default.",
    )
    install(app, settings)
    return app
