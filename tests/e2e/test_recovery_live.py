"""A real ``bastion serve``: the tokens of followed links never reach its access log."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.e2e.conftest import csrf_from
from tests.live import live_server
from tests.mail_server import MailServer

PASSWORD = "live recovery password 5"
NEW_PASSWORD = "another live passphrase 6"


def test_link_tokens_never_reach_the_access_log(tmp_path: Path, mail_server: MailServer) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with live_server(data, mail_server.env()) as live:
        created = live.cli(
            "users",
            "create",
            "alice",
            "--email",
            "alice@example.com",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        assert created.returncode == 0, created.stderr
        origin = {"Origin": live.url}
        with httpx.Client(base_url=live.url) as client:
            page = client.get("/password/forgot")
            form = {"email": "alice@example.com", "csrf_token": csrf_from(page.text)}
            assert client.post("/password/forgot", data=form, headers=origin).status_code == 200
            [mail] = mail_server.wait_for(1)
            body = mail.get_body(("plain",))
            assert body is not None
            found = re.search(rf"{re.escape(live.url)}(/password/reset/(\S+))", body.get_content())
            assert found is not None
            path, token = found.groups()
            assert client.get(path).status_code == 303
            assert client.get(f"{path}?again=1").status_code == 303  # a query after it too
            form = {
                "new_password": NEW_PASSWORD,
                "new_password_confirm": NEW_PASSWORD,
                "csrf_token": csrf_from(client.get("/password/reset").text),
            }
            assert client.post("/password/reset", data=form, headers=origin).status_code == 303
            assert client.get(path).status_code == 400
            assert client.get("/email/verify/made.up-token").status_code == 400
        port = live.url.rsplit(":", 1)[1]
    log = (data.parent / f"serve-{port}.log").read_text()
    assert "GET /password/reset/[token] HTTP/1.1" in log
    assert "GET /password/reset/[token]?again=1 HTTP/1.1" in log
    assert "GET /email/verify/[token] HTTP/1.1" in log
    assert token not in log
    assert "made.up-token" not in log
