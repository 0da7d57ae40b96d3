"""Passkeys in headless Chromium, with the DevTools protocol's virtual authenticator (CTAP2,
internal transport, resident keys, user verification on): register one on the security
page, sign in with it alone (the button, and the login field's autofill), use it as the
second step after the password, rename and remove it, and refuse a cloned one.

WebAuthn needs a secure context and a domain as RP id: the pages are loaded from
``http://localhost:<port>`` (a secure context, unlike ``127.0.0.1`` as an RP id)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, expect

from tests.browser.conftest import ARTIFACTS, PASSWORD
from tests.browser.test_reauth import age_sign_ins
from tests.live import LiveServer

pytestmark = pytest.mark.browser
# What a browser without the login field's autofill of passkeys says (Firefox, older
# Safari): the page then offers the button only.
NO_CONDITIONAL_UI = """
if (window.PublicKeyCredential) {
  PublicKeyCredential.isConditionalMediationAvailable = async () => false;
}
"""
# What a browser without WebAuthn Level 3's JSON helpers has (Safari before 18.4, Firefox
# before 119): passkeys.js converts the options and the answer itself.
NO_LEVEL_3_JSON = """
if (window.PublicKeyCredential) {
  delete PublicKeyCredential.parseCreationOptionsFromJSON;
  delete PublicKeyCredential.parseRequestOptionsFromJSON;
  delete PublicKeyCredential.prototype.toJSON;
}
"""
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


@dataclass
class Device:
    """A browser tab with a virtual authenticator attached."""

    url: str
    context: BrowserContext
    page: Page
    cdp: CDPSession
    authenticator_id: str

    def credentials(self) -> list[dict[str, Any]]:
        found = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id})
        return list(found["credentials"])

    def replace_authenticator(self, *credentials: dict[str, Any]) -> None:
        """Another authenticator in place of this one, holding ``credentials``."""
        self.cdp.send(
            "WebAuthn.removeVirtualAuthenticator", {"authenticatorId": self.authenticator_id}
        )
        added = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
        self.authenticator_id = added["authenticatorId"]
        for credential in credentials:
            self.cdp.send(
                "WebAuthn.addCredential",
                {"authenticatorId": self.authenticator_id, "credential": credential},
            )


def open_device(
    browser: Browser, server: LiveServer, *, conditional_ui: bool, level_3_json: bool = True
) -> Device:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    if not conditional_ui:
        context.add_init_script(NO_CONDITIONAL_UI)
    if not level_3_json:
        context.add_init_script(NO_LEVEL_3_JSON)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    url = server.url.replace("127.0.0.1", "localhost")
    return Device(url, context, page, cdp, added["authenticatorId"])


@pytest.fixture
def device(browser: Browser, server: LiveServer) -> Iterator[Device]:
    opened = open_device(browser, server, conditional_ui=False)
    yield opened
    opened.context.close()


def sign_in_with_password(device: Device, username: str = "alice") -> None:
    page = device.page
    page.goto(f"{device.url}/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def add_passkey(device: Device, name: str) -> None:
    page = device.page
    page.goto(f"{device.url}/account/security")
    page.get_by_label("Name of the new passkey").fill(name)
    page.get_by_role("button", name="Add a passkey").click()
    page.wait_for_url(f"{device.url}/account/security?done=passkey-added")
    expect(page.get_by_role("status").filter(has_text="Passkey added.")).to_be_visible()
    expect(page.locator("#passkeys").get_by_role("cell", name=name, exact=True)).to_be_visible()


def sign_out(device: Device) -> None:
    device.page.get_by_role("button", name="Sign out", exact=True).click()
    device.page.wait_for_url(f"{device.url}/login?done=signed-out")


def enrolled(device: Device, name: str = "Virtual laptop") -> None:
    """alice signs in with her password, adds a passkey and signs out."""
    sign_in_with_password(device)
    device.page.wait_for_url(f"{device.url}/dashboard")
    add_passkey(device, name)
    sign_out(device)


def test_passkey_added_on_the_security_page_signs_in_without_a_password(
    device: Device,
) -> None:
    page = device.page
    sign_in_with_password(device)
    page.wait_for_url(f"{device.url}/dashboard")
    page.goto(f"{device.url}/account/security")
    expect(page.get_by_text("You have no passkeys yet.")).to_be_visible()
    add_passkey(device, "Virtual laptop")
    row = page.locator("#passkeys tbody tr")
    expect(row).to_have_count(1)
    expect(row.get_by_role("cell").nth(2)).to_have_text("never")
    page.screenshot(path=str(ARTIFACTS / "passkeys-security.png"), full_page=True)
    (credential,) = device.credentials()
    assert credential["isResidentCredential"] is True
    assert credential["rpId"] == "localhost"
    sign_out(device)

    page.screenshot(path=str(ARTIFACTS / "passkeys-login.png"), full_page=True)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(f"{device.url}/dashboard")
    expect(page.get_by_role("heading", name="Welcome alice")).to_be_visible()
    page.goto(f"{device.url}/account/sessions")
    expect(page.get_by_text("with passkey", exact=True)).to_be_visible()
    page.goto(f"{device.url}/account/security")
    expect(page.locator("#passkeys tbody tr").get_by_role("cell").nth(2)).not_to_have_text("never")


def test_login_field_offers_the_passkey_where_the_browser_supports_it(
    browser: Browser, server: LiveServer
) -> None:
    device = open_device(browser, server, conditional_ui=True)
    try:
        page = device.page
        sign_in_with_password(device)
        page.wait_for_url(f"{device.url}/dashboard")
        add_passkey(device, "Virtual laptop")
        # The login page asks for passkeys in the autofill of the user-name field
        # (mediation "conditional"); the virtual authenticator picks alice's at once, as a
        # person would in the list, and nothing is clicked. That can leave the login page
        # before a locator sees it, so the field is read from the page as it was served.
        with page.expect_response(
            lambda response: (
                response.url.startswith(f"{device.url}/login") and response.status == 200
            )
        ) as login_page:
            page.get_by_role("button", name="Sign out", exact=True).click()
        assert 'autocomplete="username webauthn"' in login_page.value.text()
        page.wait_for_url(f"{device.url}/dashboard")
        expect(page.get_by_role("heading", name="Welcome alice")).to_be_visible()
    finally:
        device.context.close()


def test_passkey_is_the_second_step_after_the_password(device: Device) -> None:
    page = device.page
    enrolled(device)
    sign_in_with_password(device)
    page.wait_for_url(f"{device.url}/login/verify")
    page.screenshot(path=str(ARTIFACTS / "passkeys-verify.png"), full_page=True)
    page.get_by_role("button", name="Use a passkey").click()
    page.wait_for_url(f"{device.url}/dashboard")
    page.goto(f"{device.url}/account/sessions")
    expect(page.get_by_text("with password + passkey", exact=True)).to_be_visible()


def test_passkey_is_renamed_and_removed_and_then_signs_in_no_more(device: Device) -> None:
    page = device.page
    enrolled(device)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(f"{device.url}/dashboard")
    page.goto(f"{device.url}/account/security")
    page.get_by_text("Rename", exact=True).click()
    page.get_by_label("New name for Virtual laptop").fill("Old laptop")
    page.get_by_role("button", name="Save name").click()
    page.wait_for_url(f"{device.url}/account/security?done=passkey-renamed")
    renamed = page.locator("#passkeys").get_by_role("cell", name="Old laptop", exact=True)
    expect(renamed).to_be_visible()

    page.get_by_role("button", name="Remove passkey Old laptop").click()
    page.wait_for_url(f"{device.url}/account/security?done=passkey-removed")
    expect(page.get_by_role("status").filter(has_text="Passkey removed.")).to_be_visible()
    expect(page.get_by_text("You have no passkeys yet.")).to_be_visible()
    sign_out(device)

    # The authenticator still holds the key; the site no longer knows it.
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.get_by_role("alert")).to_have_text(
        "That passkey could not be used. Try again, or use another way to sign in."
    )
    assert page.url == f"{device.url}/login?done=signed-out"


def test_cloned_authenticator_is_refused_and_audited(device: Device, server: LiveServer) -> None:
    page = device.page
    enrolled(device)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(f"{device.url}/dashboard")
    sign_out(device)
    (original,) = device.credentials()
    assert original["signCount"] >= 2  # registration and one sign-in

    # The same key on another authenticator, whose counter is behind: a copy.
    device.replace_authenticator({**original, "signCount": 0})
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.get_by_role("alert")).to_have_text(
        "That passkey could not be used. Try again, or use another way to sign in."
    )
    assert page.url == f"{device.url}/login?done=signed-out"

    created = server.cli(
        "users", "create", "carol", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    sign_in_with_password(device, "carol")
    page.wait_for_url(f"{device.url}/dashboard")
    page.goto(f"{device.url}/admin/audit")
    expect(page.get_by_text("mfa.passkey.clone_suspected")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "passkeys-clone-audit.png"), full_page=True)
    sign_out(device)

    # The genuine authenticator, counting on, still signs in.
    device.replace_authenticator({**original, "signCount": original["signCount"] + 5})
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(f"{device.url}/dashboard")


def test_passkey_confirms_it_is_you_and_one_device_holds_one_passkey_of_an_account(
    device: Device, server: LiveServer
) -> None:
    page = device.page
    enrolled(device)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(f"{device.url}/dashboard")
    age_sign_ins(server)

    # Adding a passkey is a sensitive action: outside the window the script is sent to
    # confirm it is you, where the passkey does, and comes back.
    page.goto(f"{device.url}/account/security")
    page.get_by_role("button", name="Add a passkey").click()
    page.wait_for_url(f"{device.url}/reauth?next=/account/security")
    page.get_by_role("button", name="Confirm with a passkey").click()
    page.wait_for_url(f"{device.url}/account/security")

    # The device already holds this account's passkey (excluded in the options).
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_role("alert")).to_have_text(
        "This device already holds a passkey of this account."
    )
    assert len(device.credentials()) == 1


def test_browser_without_the_level_3_json_helpers_registers_and_signs_in(
    browser: Browser, server: LiveServer
) -> None:
    device = open_device(browser, server, conditional_ui=False, level_3_json=False)
    try:
        page = device.page
        enrolled(device)
        helpers = "typeof PublicKeyCredential.parseRequestOptionsFromJSON"
        assert page.evaluate(helpers) == "undefined"
        page.get_by_role("button", name="Sign in with a passkey").click()
        page.wait_for_url(f"{device.url}/dashboard")
        expect(page.get_by_role("heading", name="Welcome alice")).to_be_visible()
    finally:
        device.context.close()


def test_passkey_messages_are_in_the_pages_language(device: Device) -> None:
    """passkeys.js has no words of its own: in Chinese, the server's refusal (the JSON
    detail) and the browser's own error (its messages from the page) are both Chinese."""
    page = device.page
    enrolled(device)
    page.goto(f"{device.url}/login?lang=zh-CN")
    page.get_by_role("button", name="使用通行密钥登录").click()
    page.wait_for_url(f"{device.url}/dashboard")

    # The device already holds this account's passkey: the browser refuses to add another
    # (InvalidStateError), and the script says so with the page's words.
    page.goto(f"{device.url}/account/security")
    page.locator('form[data-passkey="create"] button[type="submit"]').click()
    expect(page.locator("#passkey-add-status")).to_have_text("此设备上已有该账户的通行密钥。")

    # A copy of the key (its counter behind) is refused by the server, in Chinese.
    page.get_by_role("button", name="退出登录", exact=True).click()
    page.wait_for_url(f"{device.url}/login?done=signed-out")
    (original,) = device.credentials()
    device.replace_authenticator({**original, "signCount": 0})
    page.get_by_role("button", name="使用通行密钥登录").click()
    expect(page.get_by_role("alert")).to_have_text(
        "无法使用该通行密钥。请重试，或改用其他方式登录。"
    )
    assert page.url == f"{device.url}/login?done=signed-out"
