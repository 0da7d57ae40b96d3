"""Headless Chromium: from "Forgot password?" on the sign-in page to signed in with the new
password, reading the link from the mail a real SMTP server (aiosmtpd) received."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import ARTIFACTS
from tests.live import LiveServer
from tests.mail_server import MailServer

pytestmark = pytest.mark.browser
NEW_PASSWORD = "chosen in the browser 8"


def test_forgot_password_to_signed_in_with_the_new_one(
    mailing_server: LiveServer, mail_server: MailServer, browser: Browser
) -> None:
    url = mailing_server.url
    page = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
    page.goto(f"{url}/login")
    page.get_by_role("link", name="Forgot password?").click()
    page.wait_for_url(f"{url}/password/forgot")
    page.get_by_label("E-mail address").fill("alice@example.com")
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("status")).to_contain_text("If an account uses that address")
    page.screenshot(path=str(ARTIFACTS / "password-forgot-sent.png"), full_page=True)

    [mail] = mail_server.wait_for(1)
    body = mail.get_body(("plain",))
    assert body is not None
    link = re.search(rf"{re.escape(url)}/password/reset/\S+", body.get_content())
    assert link is not None
    page.goto(link.group(0))
    page.wait_for_url(f"{url}/password/reset")  # the token left the address bar
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.screenshot(path=str(ARTIFACTS / "password-reset-form.png"), full_page=True)
    page.get_by_role("button", name="Set the new password").click()
    page.wait_for_url(f"{url}/login?done=password-reset")
    expect(page.get_by_role("status")).to_contain_text("Your password was changed")

    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{url}/dashboard")
    assert page.get_by_role("heading", name="Welcome alice").is_visible()
    page.screenshot(path=str(ARTIFACTS / "password-reset-signed-in.png"), full_page=True)

    page.goto(link.group(0))  # the link worked once
    expect(page.get_by_role("heading", name="This link cannot be used")).to_be_visible()
