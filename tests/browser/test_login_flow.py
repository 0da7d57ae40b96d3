"""Headless Chromium (Debian's build, driven by Playwright) signs in and out."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, ViewportSize

from tests.conftest import backend_missing
from tests.live import LiveServer, live_server

pytestmark = pytest.mark.browser
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
    extra = {"BASTION_REDIS_URL": redis_url, "BASTION_REDIS_PREFIX": f"{redis_prefix}:browser"}
    with live_server(data, extra) as live:
        created = live.cli(
            "users", "create", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert created.returncode == 0, created.stderr
        yield live


def sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/dashboard")


def test_browser_signs_in_sees_dashboard_and_signs_out(server: LiveServer) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
            page.goto(f"{server.url}/dashboard")
            assert page.url.startswith(f"{server.url}/login")
            page.screenshot(path=str(ARTIFACTS / "login.png"), full_page=True)

            page.get_by_label("User name").fill("alice")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{server.url}/dashboard")
            assert page.get_by_role("heading", name="Welcome alice").is_visible()
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(f"{server.url}/login")
            page.goto(f"{server.url}/dashboard")
            assert page.url.startswith(f"{server.url}/login")
        finally:
            browser.close()


def test_two_browsers_see_each_other_and_one_revokes_the_other(server: LiveServer) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            viewport: ViewportSize = {"width": 1100, "height": 760}
            laptop = browser.new_context(viewport=viewport).new_page()
            phone = browser.new_context(
                viewport={"width": 390, "height": 800},
                user_agent=(
                    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
                    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
                ),
            ).new_page()
            sign_in(laptop, server.url)
            sign_in(phone, server.url)

            laptop.goto(f"{server.url}/account/sessions")
            rows = laptop.locator("tbody tr")
            assert rows.count() == 2
            assert laptop.get_by_text("this device").count() == 1
            assert laptop.get_by_text("Mobile Safari 17 on iOS 17").count() == 1
            laptop.screenshot(path=str(ARTIFACTS / "sessions.png"), full_page=True)

            laptop.get_by_role(
                "button", name="Sign out Mobile Safari 17 on iOS 17 (iPhone)"
            ).click()
            laptop.wait_for_url(f"{server.url}/account/sessions?done=revoked")
            assert laptop.locator("tbody tr").count() == 1

            phone.goto(f"{server.url}/dashboard")
            assert phone.url.startswith(f"{server.url}/login")

            laptop.goto(f"{server.url}/admin/users")
            assert laptop.get_by_role("heading", name="Administration").is_visible()
            laptop.screenshot(path=str(ARTIFACTS / "admin-users.png"), full_page=True)
            laptop.goto(f"{server.url}/admin/audit")
            assert laptop.get_by_text("session.revoked").count() >= 1
            laptop.screenshot(path=str(ARTIFACTS / "admin-audit.png"), full_page=True)
        finally:
            browser.close()
