"""The documentation's code examples run as written."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType

import httpx
import pytest

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


async def test_hello_app_answers_signed_in_users_and_checks_roles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("BASTION_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    app = load_example(EXAMPLE).app
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        services = app.state.bastion.services
        hashed = await services.passwords.hash_async(PASSWORD)
        await services.users.create_user("carol", hashed)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/hello")).status_code == 401
            grant = {"grant_type": "password", "username": "carol", "password": PASSWORD}
            token = (await client.post("/api/token", data=grant)).json()["access_token"]
            bearer = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/hello", headers=bearer)).json() == {"hello": "carol"}
            assert (await client.get("/reports", headers=bearer)).status_code == 403
    finally:
        await lifespan.__aexit__(None, None, None)
