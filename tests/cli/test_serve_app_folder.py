"""``bastion serve --app MODULE:ATTR`` finds the application's module in the folder it is
started from, as ``uvicorn MODULE:ATTR`` does (docs/existing-app.md runs it so)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.live import live_server

APP = """
from fastapi import FastAPI

from bastion.fastapi import install

app = FastAPI()
install(app)


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "from the working folder"}
"""


def test_serve_imports_the_app_from_the_working_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "myapp.py").write_text(APP)
    data = tmp_path / "data"
    data.mkdir()

    with live_server(data, app="myapp:app", cwd=project) as live:
        answer = httpx.get(f"{live.url}/hello")

    assert answer.json() == {"hello": "from the working folder"}
