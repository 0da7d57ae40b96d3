"""The documentation's code examples run as written."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "hello_app.py"
PASSWORD = "example password 9"


def load_example(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("hello_app", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_shows_the_example_file_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S)
    assert block is not None
    example = EXAMPLE.read_text()
    for line in block.group(1).strip().splitlines():
        assert line in example, line


@pytest.fixture
def hello_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """The example app on a fresh data folder, with no BASTION_* setting of the caller's."""
    for name in list(os.environ):
        if name.startswith("BASTION_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    app: FastAPI = load_example(EXAMPLE).app
    return app


async def sign_in_and_call(app: FastAPI) -> None:
    """Carol signs in through the API and calls the example's routes."""
    services = app.state.bastion.services
    hashed = await services.passwords.hash_async(PASSWORD)
    await services.users.create_user("carol", hashed)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/hello")).status_code == 401
        # The page sends a browser to sign in; an API client gets the 401.
        browser = await client.get("/welcome", headers={"Accept": "text/html"})
        assert browser.status_code == 303
        assert browser.headers["location"] == "/login?next=/welcome"
        assert (await client.get("/welcome")).status_code == 401
        grant = {"grant_type": "password", "username": "carol", "password": PASSWORD}
        token = (await client.post("/api/token", data=grant)).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/hello", headers=bearer)).json() == {"hello": "carol"}
        welcome = await client.get("/welcome", headers=bearer)
        assert welcome.text == "<h1>Welcome, carol</h1>"
        assert (await client.get("/reports", headers=bearer)).status_code == 403


async def test_hello_app_answers_signed_in_users_and_checks_roles(hello_app: FastAPI) -> None:
    async with hello_app.router.lifespan_context(hello_app):
        await sign_in_and_call(hello_app)


async def test_hello_app_closes_every_database_connection_when_it_stops(
    hello_app: FastAPI,
) -> None:
    opened: list[object] = []
    closed: list[object] = []
    async with hello_app.router.lifespan_context(hello_app):
        pool_events = hello_app.state.bastion.services.engine.sync_engine.pool
        event.listen(pool_events, "connect", lambda connection, _record: opened.append(connection))
        event.listen(pool_events, "close", lambda connection, _record: closed.append(connection))
        await sign_in_and_call(hello_app)
        in_use = list(opened)

    assert in_use  # the requests above did use the database
    # Nothing left for the garbage collector to close after the event loop is gone.
    assert sorted(map(id, closed)) == sorted(map(id, opened))
