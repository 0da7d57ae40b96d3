"""The main flow against a real `bastion serve` process whose sessions live in Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.conftest import csrf_from
from tests.live import LiveServer, live_server

PASSWORD = "live server password 7"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, redis_prefix: str
) -> Iterator[LiveServer]:
    data: Path = tmp_path_factory.mktemp("live") / "data"
    data.mkdir()
    extra = {"BASTION_REDIS_URL": redis_url, "BASTION_REDIS_PREFIX": f"{redis_prefix}:live"}
    with live_server(data, extra) as live:
        created = live.cli("users", "create", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        assert created.returncode == 0, created.stderr
        yield live


def test_sign_in_dashboard_and_sign_out_over_http(
    server: LiveServer, redis_url: str, redis_prefix: str
) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=False) as client:
        page = client.get("/login")
        form = {"username": "alice", "password": PASSWORD, "csrf_token": csrf_from(page.text)}
        signed_in = client.post("/login", data=form, headers={"Origin": server.url})
        assert signed_in.status_code == 303
        raw = client.cookies["bastion_session"]
        # The session lives in Redis under the hash of the id, never the id itself.
        store = redis.Redis.from_url(redis_url)
        try:
            keys = [k.decode() for k in store.scan_iter(match=f"{redis_prefix}:live:session:s:*")]
        finally:
            store.close()
        assert keys
        assert all(raw not in key for key in keys)
        assert "Welcome alice" in client.get("/dashboard").text
        token = csrf_from(client.get("/dashboard").text)
        signed_out = client.post(
            "/logout", data={"csrf_token": token}, headers={"Origin": server.url}
        )
        assert signed_out.status_code == 303
        assert client.get("/dashboard").status_code == 303


def test_token_flow_and_readiness_over_http(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["database"] == "up"
        assert ready.json()["redis"] == "up"
        grant = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        tokens = client.post("/api/token", data=grant).json()
        me = client.get("/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.json()["username"] == "alice"


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(server: LiveServer) -> None:
    spoof = {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6;proto=https"}
    with httpx.Client(base_url=server.url, headers=spoof) as client:
        grant = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        tokens = client.post("/api/token", data=grant).json()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        mine = client.get("/api/sessions", headers=bearer).json()
        current = next(s for s in mine if s["current"])
        assert current["ip"] == "127.0.0.1"
        # uvicorn's own proxy handling is off too: no https scheme, so no HSTS and no
        # server banner.
        response = client.get("/healthz")
        assert "server" not in response.headers
