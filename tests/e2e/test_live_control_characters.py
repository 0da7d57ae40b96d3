"""NUL bytes against a real ``bastion serve`` on PostgreSQL: what the HTTP server lets through
reaches the app and gets a clear 4xx, never a 5xx."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_database
from tests.e2e.conftest import csrf_from
from tests.live import LiveServer, live_server

pytestmark = [pytest.mark.backend("postgres"), pytest.mark.slow]
PASSWORD = "live server password 7"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[LiveServer]:
    data: Path = tmp_path_factory.mktemp("live-pg") / "data"
    data.mkdir()
    with (
        fresh_database(postgres_url) as database_url,
        live_server(data, {"BASTION_DATABASE_URL": database_url}) as live,
    ):
        migrated = live.cli("db", "upgrade")  # a PostgreSQL database is migrated by hand
        assert migrated.returncode == 0, migrated.stderr
        yield live


def raw_status(server: LiveServer, request: bytes) -> int:
    """The status line's code for ``request`` sent byte for byte (no client library checks)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        head = sock.recv(4096)
    return int(head.split(b" ", 2)[1])


def test_nul_in_a_header_never_gets_a_5xx(server: LiveServer) -> None:
    status = raw_status(
        server,
        b"GET /login HTTP/1.1\r\nHost: x\r\nUser-Agent: Agent\x00/1.0\r\nConnection: close\r\n\r\n",
    )

    # uvicorn refuses the header itself (400); if a server let it through, the app answers.
    assert status in (200, 400)


def test_nul_in_the_sign_in_form_is_the_generic_failure(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=False) as client:
        for username in ("alice\x00", "\x00"):
            page = client.get("/login")
            form = {"username": username, "password": PASSWORD, "csrf_token": csrf_from(page.text)}
            response = client.post("/login", data=form, headers={"Origin": server.url})
            assert response.status_code == 400, response.text[:300]
            assert "Invalid user name or password." in response.text
