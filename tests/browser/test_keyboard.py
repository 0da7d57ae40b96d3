"""Keyboard only (WCAG 2.1.1, 2.4.3, 2.4.7): in headless Chromium, alice signs in (after a
wrong password, whose error summary takes the focus), goes to her security page, turns on
an authenticator app and signs out, with Tab, Shift+Tab, Enter, Space and typing alone.
Nothing is clicked or filled by selector; the test reads the focused element to choose the
next key, and reads the key the page shows (#totp-secret) as a person would.

And every stop that Tab reaches on the sign-in, dashboard, security, devices and admin user
pages draws a focus ring of 2 px or more at 3:1 or more against its background (WCAG
1.4.11), in the light and the dark colour scheme."""

from __future__ import annotations

import time
from typing import Any, Literal

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ARTIFACTS, PASSWORD, focus_on_arrival
from tests.live import LiveServer

pytestmark = pytest.mark.browser
# More Tab presses than any of these pages has stops: a bound on a loop, not a check.
MAX_TABS = 60

FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  return {
    tag: el.tagName.toLowerCase(),
    id: el.id,
    name: el.getAttribute('name') || '',
    type: el.getAttribute('type') || '',
    href: el.getAttribute('href') || '',
    action: el.form ? el.form.getAttribute('action') : '',
    text: (el.innerText || el.value || '').trim(),
    outlineStyle: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth) || 0,
    outlineColor: style.outlineColor,
  };
}"""


def focused(page: Page) -> dict[str, Any]:
    info: dict[str, Any] | None = page.evaluate(FOCUSED)
    assert info is not None, "nothing has the focus"
    return info


def tab_to(page: Page, wanted: dict[str, str], *, backwards: bool = False) -> dict[str, Any]:
    """Press Tab (Shift+Tab) until the focused element matches every item of ``wanted``."""
    key = "Shift+Tab" if backwards else "Tab"
    for _ in range(MAX_TABS):
        page.keyboard.press(key)
        info: dict[str, Any] | None = page.evaluate(FOCUSED)
        if info is not None and all(info.get(k) == v for k, v in wanted.items()):
            return info
    raise AssertionError(f"{key} never reached {wanted} on {page.url}")


def assert_focus_visible(info: dict[str, Any]) -> None:
    """The focused element draws a focus ring (WCAG 2.4.7): an outline of 2 px or more
    in a colour that shows."""
    where = f"<{info['tag']} id={info['id']!r} name={info['name']!r}>"
    assert info["outlineStyle"] not in ("none", "hidden"), f"{where}: no focus outline"
    assert info["outlineWidth"] >= 2, f"{where}: focus outline {info['outlineWidth']} px"
    assert info["outlineColor"] not in ("transparent", "rgba(0, 0, 0, 0)"), where


def test_sign_in_enrol_an_authenticator_app_and_sign_out_with_the_keyboard_alone(
    server: LiveServer, browser: Browser
) -> None:
    url = server.url
    page = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
    page.goto(f"{url}/login")

    # The user name field has the focus on arrival.
    assert focus_on_arrival(page) == "username"
    page.keyboard.type("alice")
    assert_focus_visible(tab_to(page, {"id": "password"}))
    page.keyboard.type("not the password")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # A failed sign-in: the error summary has the focus, so it is read first.
    assert focus_on_arrival(page) == "form-error"
    error = focused(page)
    assert error["id"] == "form-error", error
    assert error["text"]
    page.screenshot(path=str(ARTIFACTS / "keyboard-login-error.png"), full_page=True)

    # From the summary on to the fields: the name kept, the password typed again.
    assert tab_to(page, {"id": "username"})
    assert page.evaluate("() => document.activeElement.value") == "alice"
    tab_to(page, {"id": "password"})
    # Shift+Tab goes back to the user name, Tab forward again to the password.
    assert tab_to(page, {"id": "username"}, backwards=True)["id"] == "username"
    tab_to(page, {"id": "password"})
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/dashboard")

    # The account navigation's Security link, followed with Enter.
    link = tab_to(page, {"href": "/account/security"})
    assert_focus_visible(link)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/account/security")

    # "Set up an authenticator app".
    setup = tab_to(page, {"href": "/account/totp"})
    assert_focus_visible(setup)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/account/totp")

    # The code field has the focus; type the code an app with the shown key would show.
    assert focus_on_arrival(page) == "code"
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.keyboard.type(pyotp.TOTP(secret).at(time.time()))
    button = tab_to(page, {"tag": "button", "action": "/account/totp"})
    assert_focus_visible(button)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Your authenticator app is set up")
    assert page.locator(".recovery-code").count() > 0
    page.screenshot(path=str(ARTIFACTS / "keyboard-totp-on.png"), full_page=True)

    # Sign out: the header's button, pressed with Space.
    sign_out = tab_to(page, {"tag": "button", "action": "/logout"}, backwards=True)
    assert_focus_visible(sign_out)
    with page.expect_navigation():
        page.keyboard.press("Space")
    page.wait_for_url(f"{url}/login?done=signed-out")
    # Signed out: the dashboard sends this browser to the sign-in page.
    page.goto(f"{url}/dashboard")
    assert page.url.startswith(f"{url}/login"), page.url


# The focused element's ring against what is behind it (the outline is drawn outside the
# element, outline-offset away, over its parent's background): WCAG 1.4.11 / 2.4.7.
RING = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const rgb = (text) => {
    const m = text.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const [r, g, b, a] = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return { r, g, b, a: a === undefined ? 1 : a };
  };
  let back = null;
  for (let node = el.parentElement; node; node = node.parentElement) {
    const colour = rgb(getComputedStyle(node).backgroundColor);
    if (colour && colour.a > 0.5) { back = colour; break; }
  }
  back = back || { r: 255, g: 255, b: 255, a: 1 };
  const style = getComputedStyle(el);
  const ring = rgb(style.outlineColor);
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const [hi, lo] = [lum(ring), lum(back)].sort((x, y) => y - x);
  return {
    what: el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + " " +
      (el.innerText || el.value || el.getAttribute("aria-label") || "").trim().slice(0, 40),
    style: style.outlineStyle,
    width: parseFloat(style.outlineWidth) || 0,
    contrast: Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100,
  };
}"""
FOCUS_PAGES = ("/dashboard", "/account/security", "/account/sessions", "/admin/users")


def focus_ring_problems(page: Page) -> list[str]:
    """Tab through every stop of the page (until the focus comes round again): each one's
    ring must be drawn, 2 px or more, at 3:1 or more against its background."""
    problems: list[str] = []
    seen: list[str] = []
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        ring: dict[str, Any] | None = page.evaluate(RING)
        if ring is None:
            continue
        if ring["what"] in seen[:1]:
            break  # round again
        seen.append(ring["what"])
        where = f"{page.url}: {ring['what']}"
        if ring["style"] in ("none", "hidden") or ring["width"] < 2:
            problems.append(f"{where}: no focus ring ({ring['style']} {ring['width']}px)")
        elif ring["contrast"] < 3:
            problems.append(f"{where}: focus ring contrast {ring['contrast']}:1")
    assert seen, f"{page.url}: Tab reached nothing"
    return problems


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_focus_stop_shows_a_ring_of_3_to_1(
    server: LiveServer, browser: Browser, scheme: Literal["light", "dark"]
) -> None:
    url = server.url
    context = browser.new_context(viewport={"width": 1100, "height": 800}, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{url}/login")
    problems = focus_ring_problems(page)
    page.goto(f"{url}/login")
    page.keyboard.type("alice")
    tab_to(page, {"id": "password"})
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/dashboard")
    for path in FOCUS_PAGES:
        page.goto(url + path)
        problems += focus_ring_problems(page)
    context.close()
    assert not problems, "\n".join(problems)
