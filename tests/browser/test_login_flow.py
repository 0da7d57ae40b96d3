"""Headless Chromium (Debian's build, driven by Playwright) signs in and out."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, ViewportSize, expect

from tests.browser.conftest import ARTIFACTS, PASSWORD, sign_in
from tests.live import LiveServer

pytestmark = pytest.mark.browser


def test_browser_signs_in_sees_dashboard_and_signs_out(
    server: LiveServer, browser: Browser
) -> None:
    page = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
    page.goto(f"{server.url}/dashboard")
    assert page.url.startswith(f"{server.url}/login")
    page.screenshot(path=str(ARTIFACTS / "login.png"), full_page=True)

    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{server.url}/dashboard")
    assert page.get_by_role("heading", name="Welcome alice").is_visible()
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{server.url}/login?done=signed-out")
    expect(page.get_by_role("status")).to_have_text("You have been signed out.")
    page.screenshot(path=str(ARTIFACTS / "signed-out.png"), full_page=True)
    page.goto(f"{server.url}/dashboard")
    assert page.url.startswith(f"{server.url}/login")
    expect(page.get_by_role("status")).to_have_count(0)


def test_two_browsers_see_each_other_and_one_revokes_the_other(
    server: LiveServer, browser: Browser
) -> None:
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

    laptop.get_by_role("button", name="Sign out Mobile Safari 17 on iOS 17 (iPhone)").click()
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
