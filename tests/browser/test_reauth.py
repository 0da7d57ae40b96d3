"""Re-authentication in headless Chromium: a sensitive form sent outside the window comes
back, through /reauth, to the page it was on (the browser's own Referer), and a sensitive
page comes back with its query.

The sign-in is moved out of the window by rewriting the sessions' ``auth_time`` in the
server's own session store (Redis), as the passing of time would.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, Page, expect

from bastion.services import open_services
from bastion.settings import Settings
from tests.browser.conftest import PASSWORD
from tests.live import LiveServer

pytestmark = pytest.mark.browser
HOUR = 3600


def age_sign_ins(server: LiveServer, username: str = "alice") -> None:
    """Every session of ``username`` on ``server`` signed in an hour earlier."""
    env = server.env
    settings = Settings(
        env="test",
        data_dir=env["BASTION_DATA_DIR"],
        redis_url=env["BASTION_REDIS_URL"],
        redis_prefix=env["BASTION_REDIS_PREFIX"],
    )

    async def age() -> None:
        services = await open_services(settings)
        try:
            user = await services.users.get_by_username(username)
            assert user is not None
            for session in await services.sessions.list_for_user(user.id):
                await services.sessions.update(session, auth_time=session.auth_time - HOUR)
        finally:
            await services.aclose()

    # Playwright's sync API runs an event loop in this thread: the store is reached from
    # another one.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, age()).result()


def sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{url}/dashboard")


def confirm_with_password(page: Page) -> None:
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Confirm with password").click()


def test_a_held_back_form_returns_to_its_page_and_works_after_reauth(
    server: LiveServer, browser: Browser
) -> None:
    page = browser.new_context().new_page()
    other = browser.new_context().new_page()
    sign_in(page, server.url)
    sign_in(other, server.url)
    page.goto(f"{server.url}/account/sessions")
    age_sign_ins(server)

    page.get_by_role("button", name="Sign out everywhere else").click()
    page.wait_for_url(f"{server.url}/reauth?next=/account/sessions")
    confirm_with_password(page)
    page.wait_for_url(f"{server.url}/account/sessions")
    other.goto(f"{server.url}/dashboard")
    assert other.url.endswith("/dashboard")  # nothing was done before the confirmation

    page.get_by_role("button", name="Sign out everywhere else").click()
    page.wait_for_url(f"{server.url}/account/sessions?done=others")
    expect(page.get_by_role("status")).to_have_text("Signed out everywhere else.")
    other.goto(f"{server.url}/dashboard")
    assert "/login" in other.url


def test_a_sensitive_page_returns_with_its_query_after_reauth(
    server: LiveServer, browser: Browser
) -> None:
    page = browser.new_context().new_page()
    sign_in(page, server.url)
    age_sign_ins(server)
    page.goto(f"{server.url}/admin/users?q=ali")
    assert "/reauth?next=" in page.url
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Confirm with password").click()
    # The error summary (read first, focused): a hidden "Error:" before the message.
    expect(page.get_by_role("alert")).to_have_text("Error: The password is not correct.")
    expect(page.locator("#form-error")).to_be_focused()
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    confirm_with_password(page)
    page.wait_for_url(f"{server.url}/admin/users?q=ali")
    expect(page.get_by_role("searchbox", name="Search users")).to_have_value("ali")
    expect(page.get_by_role("heading", name="Users (1)")).to_be_visible()
