"""Bastion's fixed-path routes rule out other paths before FastAPI's matching
(``bastion.fastapi.install._FixedPathRoute``): for every request they answer exactly as
FastAPI's own ``APIRoute.matches`` does, and they are still ``APIRoute`` objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match

from bastion.fastapi import install
from bastion.settings import Settings


def scope(path: str, method: str = "GET", root_path: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": root_path + path,
        "root_path": root_path,
        "headers": [],
        "query_string": b"",
    }


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    application = FastAPI()
    install(application, Settings(env="test", data_dir=tmp_path))
    return application


def test_every_bastion_route_matches_as_fastapi_would(app: FastAPI) -> None:
    routes = [r for r in app.router.routes if isinstance(r, APIRoute)]
    fixed = [r for r in routes if type(r) is not APIRoute]
    assert {r.path for r in fixed} >= {"/healthz", "/api/token", "/api/me", "/docs"}
    paths = {r.path.replace("{session_id}", "abc") for r in routes}
    requests = [
        scope(path, method, root)
        for path in [*paths, "/api/me/", "/nowhere", "/api/sessions/abc"]
        for method in ("GET", "POST", "DELETE")
        for root in ("", "/mounted")
    ]
    for route in routes:
        for request in requests:
            expected = APIRoute.matches(route, dict(request))
            got = route.matches(dict(request))
            assert (got[0], got[1].keys()) == (expected[0], expected[1].keys()), (
                route.path,
                request["path"],
                request["method"],
            )
            assert got[0] is Match.NONE or got[1]["route"] is route


def test_an_application_route_after_bastions_is_reached(app: FastAPI) -> None:
    @app.get("/mine")
    async def mine() -> dict[str, str]:
        return {"mine": "yes"}

    matched = [r for r in app.router.routes if r.matches(scope("/mine"))[0] is Match.FULL]
    assert [getattr(r, "path", None) for r in matched] == ["/mine"]
    assert type(matched[0]) is APIRoute  # the application's own routes are left alone
