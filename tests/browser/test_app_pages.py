"""Chromium on an application's own page behind Bastion (docs/examples/protected_pages):
sent to sign in and back, its form, its inline script (CSP nonce) and its fetch() calls
(X-CSRF-Token from the meta tag, by hand and through csrf-fetch.js for a multipart upload)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, expect

from tests.browser.conftest import ARTIFACTS, PASSWORD
from tests.live import LiveServer, live_server

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_APP = "docs.examples.protected_pages.app:app"


@pytest.fixture
def example_server(tmp_path: Path) -> Iterator[LiveServer]:
    data = tmp_path / "data"
    data.mkdir()
    # The example is imported by module name, from this checkout.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    with live_server(data, {"PYTHONPATH": path}, app=EXAMPLE_APP) as live:
        created = live.cli("users", "create", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        assert created.returncode == 0, created.stderr
        yield live


def test_app_page_form_and_scripts_work_under_bastion(
    example_server: LiveServer, browser: Browser
) -> None:
    url = example_server.url
    page = browser.new_context(viewport={"width": 1000, "height": 700}).new_page()
    refused: list[str] = []  # what the CSP blocked: Chromium reports it on the console

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", watch)

    page.goto(f"{url}/notes?view=all")
    assert page.url == f"{url}/login?next=/notes%3Fview%3Dall"
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{url}/notes?view=all")
    expect(page.get_by_role("heading", name="Notes of alice")).to_be_visible()

    # The page's own form, with its hidden csrf_token field.
    page.get_by_label("Note", exact=True).fill("buy milk")
    page.get_by_role("button", name="Add", exact=True).click()
    page.wait_for_url(f"{url}/notes")
    expect(page.locator("#notes li")).to_have_text(["buy milk"])

    # The inline script runs (its nonce is the response's) and its fetch() passes CSRF.
    page.get_by_label("Quick note").fill("call the bank")
    page.get_by_role("button", name="Add without reloading").click()
    expect(page.get_by_role("status")).to_have_text("Saved")
    expect(page.locator("#notes li")).to_have_text(["buy milk", "call the bank"])

    # A multipart upload through bastion.fetch(), the token in its header.
    page.get_by_label("Attachment").set_input_files(
        {"name": "note.txt", "mimeType": "text/plain", "buffer": b"twelve bytes"}
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_have_text("Uploaded 12 bytes")
    page.screenshot(path=str(ARTIFACTS / "app-notes.png"), full_page=True)

    page.reload()
    expect(page.locator("#notes li")).to_have_text(["buy milk", "call the bank"])
    assert refused == []


def test_app_scripts_without_the_token_are_refused(
    example_server: LiveServer, browser: Browser
) -> None:
    """The contrast: the same fetch() without X-CSRF-Token gets Bastion's 403."""
    page = browser.new_context().new_page()
    page.goto(f"{example_server.url}/notes")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{example_server.url}/notes")
    status = page.evaluate(
        """async () => (await fetch("/api/notes", {
            method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({text: "forged"}),
        })).status"""
    )
    assert status == 403
    page.reload()
    expect(page.locator("#notes li")).to_have_count(0)
