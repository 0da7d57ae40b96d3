"""An operator runs the site from the web in Chromium: creates a user with a role and a
password, resets that password (the user's open session ends), changes the roles with the
checkboxes, deletes the user after confirming, and finds all four in the audit log."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ARTIFACTS, sign_in
from tests.live import LiveServer

pytestmark = pytest.mark.browser
FIRST_PASSWORD = "a first and long passphrase 1"
SECOND_PASSWORD = "a second passphrase for later 2"
ACTIONS = ["user.created", "password.changed", "user.roles_changed", "user.deleted"]


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}.png"), full_page=True)


def sign_in_as(page: Page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{url}/dashboard")


def test_admin_creates_resets_reroles_and_deletes_a_user_from_the_web(
    server: LiveServer, browser: Browser
) -> None:
    for role in ("staff", "auditor"):
        defined = server.cli("roles", "create", role)
        assert defined.returncode == 0, defined.stderr
    url = server.url
    admin = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    carol = browser.new_context(viewport={"width": 390, "height": 800}).new_page()
    sign_in(admin, url)

    # Create carol with the staff role and a password.
    admin.goto(f"{url}/admin/users")
    admin.get_by_role("link", name="New user").click()
    admin.wait_for_url(f"{url}/admin/users/new")
    admin.get_by_label("User name").fill("carol")
    admin.get_by_label("E-mail address").fill("carol@example.org")
    admin.get_by_label("staff", exact=True).check()
    admin.get_by_label("Initial password").fill(FIRST_PASSWORD)
    admin.get_by_label("Repeat the password").fill(FIRST_PASSWORD)
    shot(admin, "new-user")
    admin.get_by_role("button", name="Create user").click()
    admin.wait_for_url(f"{url}/admin/users?done=created")
    expect(admin.get_by_role("status")).to_have_text("The user was created.")
    row = admin.locator("tbody tr", has_text="carol@example.org")
    expect(row.get_by_text("staff", exact=True)).to_be_visible()
    shot(admin, "users")

    # Carol signs in with it.
    sign_in_as(carol, url, "carol", FIRST_PASSWORD)
    expect(carol.get_by_role("heading", name="Welcome carol")).to_be_visible()

    # The admin sets a new password: carol's open session ends.
    row.get_by_role("link", name="Set the password of carol").click()
    admin.get_by_label("New password", exact=True).fill(SECOND_PASSWORD)
    admin.get_by_label("Repeat the new password").fill(SECOND_PASSWORD)
    admin.get_by_role("button", name="Set password").click()
    admin.wait_for_url(f"{url}/admin/users?done=password")
    carol.goto(f"{url}/dashboard")
    assert carol.url.startswith(f"{url}/login")
    sign_in_as(carol, url, "carol", SECOND_PASSWORD)

    # Roles with the checkboxes: staff off, auditor on.
    row = admin.locator("tbody tr", has_text="carol@example.org")
    row.get_by_role("link", name="Roles of carol").click()
    expect(admin.get_by_label("staff", exact=True)).to_be_checked()
    admin.get_by_label("staff", exact=True).uncheck()
    admin.get_by_label("auditor", exact=True).check()
    shot(admin, "roles")
    admin.get_by_role("button", name="Save roles").click()
    admin.wait_for_url(f"{url}/admin/users?done=roles")
    row = admin.locator("tbody tr", has_text="carol@example.org")
    expect(row.get_by_text("auditor", exact=True)).to_be_visible()
    expect(row.get_by_text("staff", exact=True)).to_have_count(0)

    # Delete after confirming.
    row.get_by_role("link", name="Delete carol").click()
    expect(admin.get_by_role("heading", name="Delete carol?")).to_be_visible()
    shot(admin, "delete")
    admin.get_by_role("button", name="Delete carol").click()
    admin.wait_for_url(f"{url}/admin/users?done=deleted")
    expect(admin.locator("tbody tr", has_text="carol@example.org")).to_have_count(0)
    carol.goto(f"{url}/dashboard")
    assert carol.url.startswith(f"{url}/login")

    # The audit log lists the four actions on carol, each by alice.
    admin.goto(f"{url}/admin/audit")
    shot(admin, "audit")
    rows = admin.locator("tbody tr", has_text="carol")
    done = {}
    for index in range(rows.count()):
        cells = rows.nth(index).locator("td")
        done[cells.nth(1).inner_text()] = cells.nth(3).inner_text()
    assert {action: done.get(action) for action in ACTIONS} == dict.fromkeys(ACTIONS, "alice")
