"""``bastion users reset-link`` and the mail of ``bastion demo``."""

from __future__ import annotations

import queue
import re
import socket
import subprocess
import threading
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest

from bastion.recovery import InvalidLink
from bastion.services import Services
from tests.cli.conftest import BASTION, Cli, Library, assert_handled_error, assert_ok

DEMO_TIMEOUT = 60.0
NEW_PASSWORD = "chosen through the printed link 3"


def test_reset_link_prints_a_link_that_works_once(cli: Cli, library: Library) -> None:
    library.add_user("alice")

    outcome = cli.invoke("users", "reset-link", "alice", "--base-url", "https://Example.test/")

    assert_ok(outcome)
    link = outcome.stdout.strip()
    assert re.fullmatch(
        r"https://example\.test/password/reset/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", link
    )
    token = link.rsplit("/", 1)[1]

    async def use(services: Services) -> list[str]:
        await services.recovery.reset_password(token, NEW_PASSWORD)
        with pytest.raises(InvalidLink):
            await services.recovery.reset_password(token, NEW_PASSWORD + "!")
        return [repr(event) for event in await services.users.list_audit(0, 10)]

    events = library.run(use)
    assert library.password_matches("alice", NEW_PASSWORD)
    assert any("password.reset_link_made" in event and "'cli'" in event for event in events)
    assert all(token not in event for event in events)


def test_reset_link_uses_the_public_url_setting(
    cli: Cli, library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    library.add_user("alice")
    monkeypatch.setenv("BASTION_PUBLIC_URL", "https://accounts.example.test")

    outcome = cli.invoke("users", "reset-link", "alice")

    assert_ok(outcome)
    assert outcome.stdout.startswith("https://accounts.example.test/password/reset/")


def test_reset_link_needs_the_sites_address(cli: Cli, library: Library) -> None:
    library.add_user("alice")

    outcome = cli.script("users", "reset-link", "alice")

    assert_handled_error(outcome, "BASTION_PUBLIC_URL")
    assert outcome.stdout == ""


def test_reset_link_refuses_an_address_that_is_not_a_site(cli: Cli, library: Library) -> None:
    library.add_user("alice")

    outcome = cli.script("users", "reset-link", "alice", "--base-url", "https://x.test/reset?a=1")

    assert_handled_error(outcome, "public_url")
    assert outcome.stdout == ""


def test_reset_link_for_an_unknown_or_disabled_user_is_refused(cli: Cli, library: Library) -> None:
    library.add_user("bob")
    assert_ok(cli.invoke("users", "disable", "bob"))

    unknown = cli.script("users", "reset-link", "nobody", "--base-url", "https://x.test")
    disabled = cli.script("users", "reset-link", "bob", "--base-url", "https://x.test")

    assert_handled_error(unknown, "no such user")
    assert_handled_error(disabled, "disabled")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.slow
def test_demo_mails_reset_links_into_the_outbox_it_names(cli: Cli, tmp_path: Path) -> None:
    port = _free_port()
    with (tmp_path / "demo.log").open("w") as stderr:
        process = subprocess.Popen(
            [str(BASTION), "demo", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=cli.environment(),
            cwd=cli.workdir,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    banner: dict[str, str] = {}
    try:
        while "mail" not in banner:
            line = lines.get(timeout=DEMO_TIMEOUT)
            assert line is not None, (tmp_path / "demo.log").read_text()
            match = re.match(r"\s*(user|e-mail|password|mail):\s+(.+?)\s*$", line)
            if match:
                banner[match.group(1)] = match.group(2)
        assert banner["e-mail"] == "admin@example.com"
        outbox = Path(
            re.sub(r"^files in (.+?)/? \(one \.eml file per message\)$", r"\1", banner["mail"])
        )
        assert outbox == (cli.data_dir / "outbox").resolve()

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + DEMO_TIMEOUT
        while True:  # until the demo answers (a bound against a hang, not a timing check)
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the demo never answered"
            time.sleep(0.1)
        with httpx.Client(base_url=base) as browser:
            page = browser.get("/password/forgot")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            asked = browser.post(
                "/password/forgot",
                data={"email": "admin@example.com", "csrf_token": token.group(1)},
                headers={"Origin": base},
            )
            assert asked.status_code == 200
            while not list(outbox.glob("*.eml")):
                assert time.monotonic() < deadline, "no mail in the outbox"
                time.sleep(0.1)
            [eml] = outbox.glob("*.eml")
            mail = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
            assert mail["To"] == "admin@example.com"
            body = mail.get_body(("plain",))
            assert body is not None
            link = re.search(rf"{re.escape(base)}(/password/reset/\S+)", body.get_content())
            assert link is not None
            followed = browser.get(link.group(1))
            assert followed.status_code == 303
            assert browser.get("/password/reset").status_code == 200
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
