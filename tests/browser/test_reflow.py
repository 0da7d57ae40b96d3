"""WCAG 1.4.10 (reflow): at 320 CSS pixels wide (a small phone, or a 1280-pixel window at
400% zoom) no account or admin page scrolls sideways, in English or Chinese: tables stack
into one card per row, long names, addresses and user agents wrap, and every button of a
row is on screen. The passkeys and connections tables, whose rows need a passkey or an
external provider, are Bastion's templates rendered with long rows and served to the
browser with bastion.css."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route

from tests.browser.conftest import ARTIFACTS, PASSWORD, sign_in
from tests.live import LiveServer

pytestmark = pytest.mark.browser
NARROW = 320
LONG_NAME = "bartholomew-with-an-exceptionally-long-user-name"
LONG_EMAIL = "bartholomew.with.an.exceptionally.long.address@subdomain.example.org"
# A user agent the device parser does not know: the page shows its first word, long.
LONG_AGENT = "SuperLongCustomAutomationClientNameForTesting/1.0 (compatible; probe)"
STATIC = Path(__file__).resolve().parents[2] / "src" / "bastion" / "static"

PAGES = [
    "/dashboard",
    "/account/sessions",
    "/account/password",
    "/account/email",
    "/account/security",
    "/account/totp",
    "/admin/users",
    "/admin/users/new",
    "/admin/sessions",
    "/admin/audit",
]

SIDEWAYS = """() => {
  const root = document.documentElement;
  const wide = [root, ...document.querySelectorAll('.table-wrap, .card, main')]
    .filter(element => element.scrollWidth > element.clientWidth + 1)
    .map(element => element.className || element.tagName);
  const outside = [...document.querySelectorAll('button, a.button, input, summary')]
    .filter(element => element.offsetParent !== null)
    .filter(element => {
      const box = element.getBoundingClientRect();
      return box.left < -1 || box.right > root.clientWidth + 1;
    })
    .map(element => element.outerHTML.slice(0, 120));
  return {wide, outside, width: root.scrollWidth};
}"""


def narrow_page(browser: Browser, **context: Any) -> Page:
    return browser.new_context(
        viewport={"width": NARROW, "height": 640}, device_scale_factor=1, **context
    ).new_page()


def assert_no_sideways_scroll(page: Page, what: str) -> None:
    found = page.evaluate(SIDEWAYS)
    name = what.strip("/").replace("/", "-").replace("?", "-").replace("=", "-") or "page"
    page.screenshot(path=str(ARTIFACTS / f"reflow-{name}-{NARROW}.png"), full_page=True)
    assert found["wide"] == [], f"{what} scrolls sideways: {found}"
    assert found["outside"] == [], f"{what} has controls off screen: {found}"
    assert found["width"] <= NARROW, f"{what} is {found['width']} px wide"


@pytest.fixture
def crowded(server: LiveServer) -> LiveServer:
    """A user with a long name and address, sessions from a long user agent."""
    created = server.cli(
        "users",
        "create",
        LONG_NAME,
        "--email",
        LONG_EMAIL,
        "--password-stdin",
        stdin=PASSWORD + " for bart\n",
    )
    assert created.returncode == 0, created.stderr
    return server


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_account_and_admin_pages_reflow_at_320_pixels(
    crowded: LiveServer, browser: Browser, language: str
) -> None:
    page = narrow_page(browser, user_agent=LONG_AGENT)
    sign_in(page, crowded.url)
    narrow_page(browser, user_agent=LONG_AGENT).goto(crowded.url + "/login")  # a pre-session
    other = narrow_page(browser, user_agent=LONG_AGENT)
    sign_in(other, crowded.url)  # a second session of alice's, from the same agent
    page.goto(f"{crowded.url}/dashboard?lang={language}")
    for path in PAGES:
        page.goto(crowded.url + path)
        assert page.locator("html").get_attribute("lang") == language
        assert_no_sideways_scroll(page, f"{path}-{language}")
    # The admin pages of one user, with the long name in their headings and buttons.
    page.goto(f"{crowded.url}/admin/users")
    for action in ("roles", "password", "mfa", "delete"):
        page.goto(f"{crowded.url}/admin/users/2/{action}")
        assert_no_sideways_scroll(page, f"/admin/users/2/{action}-{language}")


def test_a_form_in_an_error_state_reflows_at_320_pixels(
    crowded: LiveServer, browser: Browser
) -> None:
    page = narrow_page(browser)
    sign_in(page, crowded.url)
    page.goto(f"{crowded.url}/admin/users/new")
    page.get_by_label("User name").fill(LONG_NAME)
    page.get_by_role("button", name="Create user").click()
    page.wait_for_load_state()
    assert page.title().startswith("Error: New user")
    assert_no_sideways_scroll(page, "/admin/users/new-error")


# -- tables whose rows need more than a server: rendered templates ------------------------


def render(template: str, **context: Any) -> str:
    from bastion.fastapi.templating import Templates

    settings = SimpleNamespace(oauth_providers=["corp"], password_min_length=12)
    request = SimpleNamespace(
        url=SimpleNamespace(path="/account/security", query=""),
        app=SimpleNamespace(state=SimpleNamespace(bastion=SimpleNamespace(settings=settings))),
    )
    user = SimpleNamespace(
        username=LONG_NAME,
        has_role=lambda role: True,
        session=SimpleNamespace(mfa_enrolment=False, email=LONG_EMAIL, email_verified=True),
    )
    base = {
        "request": request,
        "user": user,
        "csrf_token": "token",
        "csp_nonce": "nonce",
        "static": lambda path: f"/_bastion/static/{path}",
        "error": None,
        "notice": None,
    }
    html: str = Templates().env.get_template(template).render({**base, **context})
    return html


def serve(page: Page, html: str) -> None:
    def answer(route: Route) -> None:
        path = route.request.url.split("/_bastion/static/", 1)
        if len(path) == 2:
            file = STATIC / path[1]
            kind = "text/css" if file.suffix == ".css" else "text/javascript"
            route.fulfill(status=200, body=file.read_bytes(), content_type=kind)
        else:
            route.fulfill(status=200, body=html, content_type="text/html; charset=utf-8")

    page.route("**/*", answer)
    page.goto("http://bastion.test/account/security")


def test_the_passkeys_and_connections_tables_reflow_at_320_pixels(browser: Browser) -> None:
    moment = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
    passkeys = [
        SimpleNamespace(
            id=n,
            name=f"{LONG_NAME}'s security key number {n}",
            backed_up=n == 1,
            created_at=moment,
            last_used_at=moment if n == 1 else None,
        )
        for n in (1, 2)
    ]
    summary = SimpleNamespace(
        totp=True, recovery_codes_left=10, recovery_code_used_at=None, has_any=True
    )
    security = render("account_security.html", summary=summary, passkeys=passkeys)
    identity = SimpleNamespace(
        provider="corp", email=LONG_EMAIL, created_at=moment, last_used_at=None
    )
    connections = render(
        "account_connections.html",
        rows=[{"label": "Corporate Identity Provider of the Company", "identity": identity}],
        available=[SimpleNamespace(name="github", label="GitHub Enterprise Server")],
    )
    page = narrow_page(browser)
    for name, html in (("passkeys", security), ("connections", connections)):
        assert '<table class="stack"' in html
        serve(page, html)
        assert_no_sideways_scroll(page, name)
