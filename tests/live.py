"""A real ``bastion serve`` process for end-to-end and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BASTION = str(Path(sys.executable).with_name("bastion"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BASTION, *args], input=stdin, env=self.env, capture_output=True, text=True, timeout=60
        )


def server_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update({"BASTION_DATA_DIR": str(data_dir), "BASTION_ENV": "test", **(extra or {})})
    return env


@contextmanager
def live_server(
    data_dir: Path,
    extra: Mapping[str, str] | None = None,
    *,
    app: str | None = None,
    cwd: Path | None = None,
    port: int | None = None,
) -> Iterator[LiveServer]:
    """``bastion serve`` on ``port`` (default: a free one): the reference app, or ``app``
    (``MODULE:ATTR``), started in ``cwd`` (the application's folder, where ``--app`` finds
    its module). A test that must know its URL before the start (an OAuth client's redirect
    URI) takes a ``free_port()`` and passes it."""
    env = server_env(data_dir, extra)
    port = port or free_port()
    log = open(data_dir.parent / f"serve-{port}.log", "wb")  # noqa: SIM115 - closed below
    command = [BASTION, "serve", "--port", str(port), *(["--app", app] if app else [])]
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bastion serve exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("bastion serve did not become healthy in 30 s")
            time.sleep(0.1)
        yield LiveServer(url, env, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
