"""Issue #15's "done when", in headless Chromium against a live server: enrol an
authenticator app by reading its secret from the page, sign out, sign in with password and
code, use a recovery code once (a second use fails), then register a passkey and sign in
with it alone."""

from __future__ import annotations

import time

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_passkeys import (
    add_passkey,
    open_device,
    sign_in_with_password,
    sign_out,
)
from tests.live import LiveServer

pytestmark = pytest.mark.browser
USED_RECOVERY_CODE = "Error: That recovery code is not valid, or it was used already."


def test_totp_recovery_codes_and_passkeys_from_enrolment_to_sign_in(
    browser: Browser, server: LiveServer
) -> None:
    device = open_device(browser, server, conditional_ui=False)
    page, url = device.page, device.url
    try:
        sign_in_with_password(device)
        page.wait_for_url(f"{url}/dashboard")

        # Enrol the authenticator app: the secret is read from the page, as a person types it.
        page.goto(f"{url}/account/security")
        expect(page.locator("#totp-status")).to_have_text("off")
        page.get_by_role("link", name="Set up an authenticator app").click()
        page.wait_for_url(f"{url}/account/totp")
        totp = pyotp.TOTP(page.locator("#totp-secret").inner_text().strip())
        page.get_by_label("Enter the 6-digit code the app shows").fill(totp.now())
        page.get_by_role("button", name="Turn on").click()
        expect(page.get_by_role("heading", name="Your authenticator app is set up")).to_be_visible()
        codes = [code.strip() for code in page.locator(".recovery-code").all_inner_texts()]
        assert len(codes) == 10
        assert len(set(codes)) == 10
        page.screenshot(path=str(ARTIFACTS / "mfa-recovery-codes.png"), full_page=True)
        page.get_by_role("link", name="I have saved my codes").click()
        expect(page.locator("#totp-status")).to_have_text("on")
        sign_out(device)

        # Password, then the code. The enrolment spent the current time step and a code is
        # never taken twice: the app's next code (one step ahead is accepted) signs in.
        sign_in_with_password(device)
        page.wait_for_url(f"{url}/login/verify")
        page.get_by_label("Code from your authenticator app").fill(totp.at(time.time() + 30))
        page.get_by_role("button", name="Verify").click()
        page.wait_for_url(f"{url}/dashboard")
        page.goto(f"{url}/account/sessions")
        expect(page.get_by_text("with password + authenticator code", exact=True)).to_be_visible()
        sign_out(device)

        # A recovery code instead of the code: once.
        sign_in_with_password(device)
        page.wait_for_url(f"{url}/login/verify")
        use_recovery_code(page, codes[0])
        page.wait_for_url(f"{url}/dashboard")
        page.goto(f"{url}/account/security")
        expect(page.locator("#recovery-codes-left")).to_have_text("9")
        expect(page.locator("#recovery-code-used")).to_be_visible()
        sign_out(device)

        sign_in_with_password(device)
        page.wait_for_url(f"{url}/login/verify")
        use_recovery_code(page, codes[0])
        expect(page.get_by_role("alert")).to_have_text(USED_RECOVERY_CODE)
        expect(page.get_by_label("Recovery code")).to_have_attribute("aria-invalid", "true")
        assert page.url == f"{url}/login/verify"
        use_recovery_code(page, codes[1])
        page.wait_for_url(f"{url}/dashboard")

        # A passkey, registered now, signs in without the password.
        add_passkey(device, "Virtual laptop")
        sign_out(device)
        page.get_by_role("button", name="Sign in with a passkey").click()
        page.wait_for_url(f"{url}/dashboard")
        expect(page.get_by_role("heading", name="Welcome alice")).to_be_visible()
        page.goto(f"{url}/account/sessions")
        expect(page.get_by_text("with passkey", exact=True)).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "mfa-sessions.png"), full_page=True)
    finally:
        device.context.close()


def use_recovery_code(page: Page, code: str) -> None:
    """On /login/verify: open "Use a recovery code instead" and submit ``code``."""
    details = page.locator("details.recovery")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    page.get_by_label("Recovery code").fill(code)
    page.get_by_role("button", name="Use recovery code").click()
