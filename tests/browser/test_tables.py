"""The tables of the account and admin pages in Chromium at a phone's and a laptop's width:
every action button on screen without a horizontal scroll, and each row's borders in line."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import ARTIFACTS, PASSWORD, sign_in
from tests.live import LiveServer

pytestmark = pytest.mark.browser
PHONE, LAPTOP = 390, 1100
TABLE_PAGES = ["/admin/users", "/admin/sessions", "/admin/audit", "/account/sessions"]


@pytest.fixture
def busy_server(server: LiveServer) -> LiveServer:
    """Two users (so there is a user to disable) with a long name and e-mail address."""
    created = server.cli(
        "users",
        "create",
        "bob-with-a-rather-long-name",
        "--email",
        "bob.with.a.rather.long.address@example.org",
        "--password-stdin",
        stdin=PASSWORD + " for bob\n",
    )
    assert created.returncode == 0, created.stderr
    return server


def signed_in_page(browser: Browser, server: LiveServer, width: int) -> Page:
    page = browser.new_context(viewport={"width": width, "height": 800}).new_page()
    sign_in(page, server.url)
    return page


def screenshot(page: Page, path: str, width: int) -> None:
    name = path.strip("/").replace("/", "-")
    page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)


def test_table_actions_are_on_a_phone_screen_without_horizontal_scroll(
    busy_server: LiveServer, browser: Browser
) -> None:
    page = signed_in_page(browser, busy_server, PHONE)
    signed_in_page(browser, busy_server, PHONE)  # a second session: more rows to show
    for path in TABLE_PAGES:
        page.goto(busy_server.url + path)
        screenshot(page, path, PHONE)
        buttons = page.locator("table button, table a.button")
        if path != "/admin/audit":
            assert buttons.count() > 0, path
        for index in range(buttons.count()):
            box = buttons.nth(index).bounding_box()
            assert box is not None, path
            assert box["x"] >= 0, path
            assert box["x"] + box["width"] <= PHONE, (path, buttons.nth(index).inner_text())
        overflow = page.evaluate(
            """() => [document.documentElement, ...document.querySelectorAll('.table-wrap')]
                 .filter(element => element.scrollWidth > element.clientWidth).length"""
        )
        assert overflow == 0, f"{path} scrolls sideways"


def test_table_rows_keep_their_borders_in_line_on_a_laptop(
    busy_server: LiveServer, browser: Browser
) -> None:
    page = signed_in_page(browser, busy_server, LAPTOP)
    for path in TABLE_PAGES:
        page.goto(busy_server.url + path)
        screenshot(page, path, LAPTOP)
        # Every cell of a row ends where the row ends: its bottom border is one line.
        uneven = page.evaluate(
            """() => [...document.querySelectorAll('tbody tr')].filter(row => {
                 const bottom = row.getBoundingClientRect().bottom;
                 return [...row.cells].some(
                   cell => Math.abs(cell.getBoundingClientRect().bottom - bottom) > 0.5);
               }).length"""
        )
        assert uneven == 0, f"{path}: a cell's border is out of line with its row"


def test_no_word_in_a_table_is_broken_on_a_laptop(
    busy_server: LiveServer, browser: Browser
) -> None:
    """A user name, address, event code or time is never cut into pieces on a wide screen
    (a long column elsewhere in the table must not squeeze it): every run of text without a
    space or hyphen sits on one line."""
    page = signed_in_page(browser, busy_server, LAPTOP)
    for path in TABLE_PAGES:
        page.goto(busy_server.url + path)
        broken = page.evaluate(
            """() => {
                 const found = [];
                 const walker = document.createTreeWalker(
                   document.querySelector('table tbody'), NodeFilter.SHOW_TEXT);
                 for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                   const text = node.textContent;
                   const word = /[^\\s-]{2,}/g;
                   for (let match = word.exec(text); match; match = word.exec(text)) {
                     const range = document.createRange();
                     range.setStart(node, match.index);
                     range.setEnd(node, match.index + match[0].length);
                     const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
                     if (tops.size > 1) found.push(match[0]);
                   }
                 }
                 return found;
               }"""
        )
        assert broken == [], f"{path}: words broken across lines: {broken}"
