"""``/docs`` in headless Chromium: Swagger UI 5 renders FastAPI's OpenAPI 3.1 document under
the strict CSP, signs in with the OAuth2 password flow and calls ``GET /api/me``."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, ConsoleMessage, expect

from tests.browser.conftest import ARTIFACTS, authorize_in_docs
from tests.live import LiveServer

pytestmark = pytest.mark.browser


def test_docs_render_authorize_and_call_api_me(server: LiveServer, browser: Browser) -> None:
    # A fresh context with no session cookie: the 200 below comes from the bearer token.
    page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    console_errors: list[str] = []

    def keep_error(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    page.on("console", keep_error)
    page.goto(f"{server.url}/docs")

    # The operations are rendered (Swagger UI 4 showed "Unable to render this definition").
    me = page.locator(".opblock", has=page.locator(".opblock-summary-path", has_text="/api/me"))
    expect(me.locator(".opblock-summary-method")).to_have_text("GET")
    expect(page.get_by_text("/api/token", exact=True)).to_be_visible()
    expect(page.get_by_text("Unable to render this definition")).to_have_count(0)

    authorize_in_docs(page)

    me.locator(".opblock-summary").first.click()
    me.get_by_role("button", name="Try it out").click()
    me.get_by_role("button", name="Execute").click()
    response = me.locator(".live-responses-table .response")
    expect(response.locator(".response-col_status")).to_have_text("200")
    expect(response.locator(".response-col_description")).to_contain_text('"username": "alice"')
    page.screenshot(path=str(ARTIFACTS / "docs-api-me.png"), full_page=True)
    # Nothing was refused by the CSP (Chromium reports each refusal as a console error).
    assert console_errors == []
