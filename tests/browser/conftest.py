"""Browser fixtures: a real ``bastion serve`` with user alice (admin), and Debian's headless
Chromium driven by Playwright."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import backend_missing
from tests.live import LiveServer, live_server
from tests.mail_server import MailServer

# Screenshots for a person to look at (git-ignored).
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PASSWORD = "browser test password 1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        backend_missing("Debian's chromium is not installed (.ci/install-packages installs it)")
    assert path is not None
    return path


@pytest.fixture
def server(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[LiveServer]:
    data = tmp_path / "data"
    data.mkdir()
    # A prefix per server: each test's database starts its user ids at 1 again.
    prefix = f"{redis_prefix}:browser-{secrets.token_hex(4)}"
    extra = {"BASTION_REDIS_URL": redis_url, "BASTION_REDIS_PREFIX": prefix}
    with live_server(data, extra) as live:
        created = live.cli(
            "users", "create", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert created.returncode == 0, created.stderr
        yield live


ALICE_ADDRESS = "alice@example.com"


@pytest.fixture
def mailing_server(
    tmp_path: Path, redis_url: str, redis_prefix: str, mail_server: MailServer
) -> Iterator[LiveServer]:
    """``bastion serve`` sending its mail to the test's real SMTP server, with user alice
    (address :data:`ALICE_ADDRESS`)."""
    data = tmp_path / "data"
    data.mkdir()
    extra = {
        "BASTION_REDIS_URL": redis_url,
        "BASTION_REDIS_PREFIX": f"{redis_prefix}:browser-{secrets.token_hex(4)}",
        **mail_server.env(),
    }
    with live_server(data, extra) as live:
        created = live.cli(
            "users",
            "create",
            "alice",
            "--email",
            ALICE_ADDRESS,
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        assert created.returncode == 0, created.stderr
        yield live


@pytest.fixture
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{url}/dashboard")


def authorize_in_docs(page: Page) -> None:
    """On ``/docs``: alice signs in through Swagger UI's Authorize dialog (the OAuth2
    password flow), so that the page's "Try it out" calls carry her bearer token."""
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".modal-ux")
    dialog.get_by_label("username:").fill("alice")
    dialog.get_by_label("password:").fill(PASSWORD)
    dialog.get_by_role("button", name="Apply given OAuth2 credentials").click()
    expect(dialog.get_by_role("heading", name="Authorized")).to_be_visible()
    dialog.get_by_role("button", name="Close").click()


def focus_on_arrival(page: Page, timeout_ms: float = 5000) -> str | None:
    """The id of the element a page put the focus on when it arrived (``autofocus``), or
    None if it left the focus on the body. Chromium runs autofocus when it next renders,
    which on a busy machine can come after the load event: wait for it, up to a bound."""
    try:
        page.wait_for_function(
            "() => document.activeElement && document.activeElement !== document.body",
            timeout=timeout_ms,
        )
    except PlaywrightTimeout:
        return None
    active: str = page.evaluate("() => document.activeElement.id")
    return active
