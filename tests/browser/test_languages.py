"""Headless Chromium with an English browser: the footer's language switcher (a plain form
button) turns the sign-in page into Simplified Chinese, the dashboard after signing in is
Chinese, and the password-reset mail that a real SMTP server (aiosmtpd) receives is in
Chinese too. Chinese text is drawn by a Chinese face that the stylesheet names."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ALICE_ADDRESS, ARTIFACTS, PASSWORD
from tests.conftest import backend_missing
from tests.live import LiveServer
from tests.mail_server import MailServer

pytestmark = pytest.mark.browser
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def html_lang(page: Page) -> str | None:
    return page.locator("html").get_attribute("lang")


def test_the_switcher_turns_pages_and_mail_into_chinese(
    mailing_server: LiveServer, mail_server: MailServer, browser: Browser
) -> None:
    url = mailing_server.url
    context = browser.new_context(viewport={"width": 1100, "height": 760}, locale="en-US")
    page = context.new_page()
    page.goto(f"{url}/login")
    assert html_lang(page) == "en"
    expect(page.locator("h1")).to_have_text("Sign in")

    switcher = page.get_by_role("navigation", name="Language")
    switcher.get_by_role("button", name="简体中文").click()
    page.wait_for_url(f"{url}/login")
    assert html_lang(page) == "zh-CN"
    expect(page.locator("h1")).to_have_text("登录")
    expect(page.get_by_label("用户名")).to_be_visible()
    chinese_switcher = page.locator("nav.language-switcher")
    expect(chinese_switcher.locator('[aria-current="true"]')).to_have_text("简体中文")
    page.screenshot(path=str(ARTIFACTS / "language-login-zh.png"), full_page=True)

    page.get_by_label("用户名").fill("alice")
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.locator('form[action="/login"] button[type="submit"]').click()
    page.wait_for_url(f"{url}/dashboard")
    assert html_lang(page) == "zh-CN"
    expect(page.get_by_role("heading", level=1)).to_have_text("欢迎，alice")
    expect(page.get_by_role("button", name="退出登录")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "language-dashboard-zh.png"), full_page=True)

    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url(re.compile(re.escape(url) + r"/login"))
    page.goto(f"{url}/password/forgot")
    assert html_lang(page) == "zh-CN"
    page.locator("#email").fill(ALICE_ADDRESS)
    page.get_by_role("button", name="发送链接").click()
    expect(page.get_by_role("status")).to_contain_text(CHINESE)

    [mail] = mail_server.wait_for(1)
    assert CHINESE.search(str(mail["Subject"])), mail["Subject"]
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None
    assert html is not None
    assert CHINESE.search(text.get_content())
    assert f"{url}/password/reset/" in text.get_content()
    assert 'lang="zh-CN"' in html.get_content()
    assert "Choose a new password" not in text.get_content()
    context.close()


def test_chinese_text_is_drawn_by_a_chinese_face_the_stylesheet_names(
    server: LiveServer, browser: Browser
) -> None:
    """Every glyph of the Chinese sign-in page's heading, labels and button comes from a face
    that bastion.css's font stack names (not a face the browser fell back to on its own),
    as Chromium reports what it drew with (CDP CSS.getPlatformFontsForNode)."""
    if (
        shutil.which("fc-list")
        and not subprocess.run(
            ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False
        ).stdout.strip()
    ):
        backend_missing("no Simplified Chinese font (.ci/install-packages installs one)")
    page = browser.new_page()
    page.goto(f"{server.url}/login?lang=zh-CN")
    stack = page.evaluate("() => getComputedStyle(document.body).fontFamily")
    named = {face.strip().strip('"').lower() for face in stack.split(",")}
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    for selector in ("h1", "label[for=username]", 'form[action="/login"] button[type=submit]'):
        text = page.inner_text(selector).strip()
        assert CHINESE.search(text), (selector, text)
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        drawn = {font["familyName"].lower(): font["glyphCount"] for font in fonts}
        assert sum(drawn.values()) == len(text.replace(" ", "")), (selector, fonts)
        assert set(drawn) <= named, f"{selector} drawn with {sorted(drawn)}, stack: {stack}"
    page.close()
