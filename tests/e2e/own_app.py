"""An application of the test's own (its hooks, its template folder) run like the e2e site."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from bastion.fastapi import install
from bastion.settings import Settings
from tests.e2e.conftest import Site


@asynccontextmanager
async def own_app(settings: Settings, **install_options: Any) -> AsyncIterator[Site]:
    """A bare FastAPI app with ``install(app, settings, **install_options)``, started."""
    app = FastAPI(title="The application's own title")
    install(app, settings, **install_options)
    async with app.router.lifespan_context(app):
        yield Site(app, app.state.bastion)
