"""``/docs`` in a browser that is also signed in to the site: Swagger UI's calls made with a
bearer token still work. Bastion checks CSRF on any request carrying its cookies, so the
page must leave them out of those calls (docs/csrf.md)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import authorize_in_docs, sign_in
from tests.live import LiveServer

pytestmark = pytest.mark.browser


def test_docs_calls_with_a_token_work_beside_a_session_cookie(
    server: LiveServer, browser: Browser
) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    sign_in(page, server.url)  # the browser now holds the session cookie
    me = context.request.get(f"{server.url}/api/me")
    assert me.ok
    browser_session = me.json()["session_id"]

    page.goto(f"{server.url}/docs")
    authorize_in_docs(page)

    # An unsafe call with the token: refused by CSRF if the session cookie rode along.
    delete = page.locator(
        ".opblock-delete",
        has=page.locator(".opblock-summary-path", has_text="/api/sessions/{session_id}"),
    )
    delete.locator(".opblock-summary").first.click()
    delete.get_by_role("button", name="Try it out").click()
    delete.locator(".parameters input").first.fill(browser_session)
    delete.get_by_role("button", name="Execute").click()
    status = delete.locator(".live-responses-table .response .response-col_status")
    expect(status).to_have_text("204")

    # The call really ended the browser's session (the token's user may end their own).
    page.goto(f"{server.url}/dashboard")
    page.wait_for_url(f"{server.url}/login?next=/dashboard")
    context.close()
