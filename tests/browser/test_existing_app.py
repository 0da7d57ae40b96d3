"""Chromium on the notes application of docs/examples/existing_app: its database built from
empty by both Alembic histories, served by ``bastion serve --app notes.app:app`` from its
folder (tests/existing_app.py); sign in, add a note through the page's form, see it, sign
out, and be sent to sign in when opening the page again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import ARTIFACTS
from tests.existing_app import PASSWORD, SITE_NAME, NotesSite, notes_server

pytestmark = pytest.mark.browser


@pytest.fixture
def site(tmp_path: Path) -> Iterator[NotesSite]:
    with notes_server(tmp_path / "data") as notes:
        yield notes


def test_sign_in_add_a_note_sign_out_and_be_sent_to_sign_in(
    site: NotesSite, browser: Browser
) -> None:
    url = site.url
    page = browser.new_context(viewport={"width": 1000, "height": 700}).new_page()

    page.goto(f"{url}/notes")
    assert page.url == f"{url}/login?next=/notes"
    expect(page).to_have_title(f"Sign in · {SITE_NAME}")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{url}/notes")
    expect(page).to_have_title(f"Notes · {SITE_NAME}")
    expect(page.get_by_role("heading", name="Your notes")).to_be_visible()
    expect(page.get_by_text("No notes yet.")).to_be_visible()

    # The page's own form, with its csrf_field().
    page.get_by_label("New note").fill("buy milk")
    page.get_by_role("button", name="Add note").click()
    page.wait_for_url(f"{url}/notes")
    expect(page.locator("#notes li")).to_have_text(["buy milk"])
    page.get_by_label("New note").fill("call the bank")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#notes li")).to_have_text(["buy milk", "call the bank"])
    page.screenshot(path=str(ARTIFACTS / "existing-app-notes.png"), full_page=True)

    # Bastion's pages link to the application's (overrides/base.html).
    page.goto(f"{url}/dashboard")
    page.get_by_role("link", name="Notes", exact=True).click()
    page.wait_for_url(f"{url}/notes")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{url}/login?done=signed-out")
    page.goto(f"{url}/notes")
    assert page.url == f"{url}/login?next=/notes"
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
