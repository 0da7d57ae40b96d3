"""``bastion serve`` tunes the garbage collector once the app has started, and its access
log can be switched off: checked on a real server, through an app that reports its own
process's collector."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.live import BASTION, free_port, server_env

PROBE_APP = """
import gc

from fastapi import FastAPI

from bastion.fastapi import install

app = FastAPI()
install(app)


@app.get("/probe")
async def probe() -> dict[str, object]:
    return {"frozen": gc.get_freeze_count(), "threshold": list(gc.get_threshold())}
"""


@contextmanager
def serving(tmp_path: Path, *args: str) -> Iterator[tuple[str, Path]]:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "probeapp.py").write_text(PROBE_APP)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    command = [BASTION, "serve", "--app", "probeapp:app", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=server_env(data), cwd=project, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_serve_freezes_the_startup_heap_and_logs_each_request(tmp_path: Path) -> None:
    with serving(tmp_path) as (url, log):
        report = httpx.get(f"{url}/probe").json()
        time.sleep(0.3)  # the log line is written after the response
        logged = log.read_text()

    # Everything the app and Bastion's services left alive at start-up is out of the
    # collector's walks, and young objects are collected far less often than Python's 700.
    assert report["frozen"] > 10_000
    assert report["threshold"][0] == 10_000
    assert '"GET /probe HTTP/1.1" 200' in logged


def test_serve_leaves_the_collector_and_the_log_alone_when_told(tmp_path: Path) -> None:
    with serving(tmp_path, "--no-gc-tuning", "--no-access-log") as (url, log):
        report = httpx.get(f"{url}/probe").json()
        time.sleep(0.3)
        logged = log.read_text()

    assert report["frozen"] == 0
    assert report["threshold"][0] < 10_000  # Python's own (700 up to 3.13)
    assert "Application startup complete" in logged
    assert "/probe" not in logged
