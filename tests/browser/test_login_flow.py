"""Headless Chromium (Debian's build, driven by Playwright) signs in and out."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

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
        backend_missing("Debian's chromium is not installed (tests/browser/install-chromium)")
    assert path is not None
    return path


@pytest.fixture
def server(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[LiveServer]:
    data = tmp_path / "data"
    data.mkdir()
    extra = {"BASTION_REDIS_URL": redis_url, "BASTION_REDIS_PREFIX": f"{redis_prefix}:browser"}
    with live_server(data, extra) as live:
        created = live.cli("users", "create", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        assert created.returncode == 0, created.stderr
        yield live


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
