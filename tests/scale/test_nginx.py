"""The documented nginx snippet in front of a real `bastion serve`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import backend_missing
from tests.e2e.conftest import csrf_from
from tests.live import LiveServer, free_port, live_server

SNIPPET = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "nginx-location.conf"
PASSWORD = "proxied password 5"
PROXY_ADDRESS = "127.0.0.2"  # nginx connects upstream from here; the client uses 127.0.0.1


def nginx_config(work: Path, listen: int, upstream: int) -> str:
    location = SNIPPET.read_text().replace("127.0.0.1:8000", f"127.0.0.1:{upstream}")
    temp = {k: work / k for k in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return f"""
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    server {{
        listen 127.0.0.1:{listen};
        proxy_bind {PROXY_ADDRESS};
        {location}
    }}
}}
"""


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[str, LiveServer]]:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        backend_missing("nginx is not installed (apt-get install nginx-light)")
    assert nginx is not None
    data = tmp_path / "data"
    data.mkdir()
    extra = {"BASTION_TRUSTED_PROXIES": PROXY_ADDRESS}
    with live_server(data, extra) as server:
        created = server.cli("users", "create", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        assert created.returncode == 0, created.stderr
        upstream = int(server.url.rsplit(":", 1)[1])
        listen = free_port()
        work = tmp_path / "nginx"
        work.mkdir()
        conf = work / "nginx.conf"
        conf.write_text(nginx_config(work, listen, upstream))
        checked = subprocess.run(
            [nginx, "-t", "-c", str(conf), "-p", str(work), "-e", str(work / "error.log")],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stderr
        process = subprocess.Popen(
            [
                nginx,
                "-c",
                str(conf),
                "-p",
                str(work),
                "-e",
                str(work / "error.log"),
                "-g",
                "daemon off;",
            ]
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", listen), 0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("nginx did not start") from None
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{listen}", server
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_documented_nginx_snippet_passes_the_real_client_and_drops_spoofed_headers(
    proxied: tuple[str, LiveServer],
) -> None:
    url, _ = proxied
    spoof = {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=7.7.7.7;proto=https"}
    with httpx.Client(base_url=url, headers=spoof) as client:
        page = client.get("/login")
        assert page.status_code == 200
        form = {"username": "alice", "password": PASSWORD, "csrf_token": csrf_from(page.text)}
        signed_in = client.post("/login", data=form, headers={"Origin": url})
        assert signed_in.status_code == 303, signed_in.text
        sessions = client.get("/api/sessions").json()
    # nginx appended the real peer (127.0.0.1) after the spoofed entry; Bastion believes
    # only its trusted proxy and stops at the first address that is not one.
    assert [s["ip"] for s in sessions] == ["127.0.0.1"]
