"""The sign-in pages and mails in Simplified Chinese, and their forms' error states (WCAG
3.3.1, 4.1.2): the reference app over ASGI, on every session store and both databases; mails
through a real SMTP server (tests/mail_server.py)."""

from __future__ import annotations

import re
from email.message import EmailMessage

import httpx
import pytest

from bastion.settings import Settings
from tests.e2e.conftest import (
    CSRF_META,
    ORIGIN,
    PASSWORD,
    MakeSettings,
    Site,
    SiteFactory,
    csrf_from,
    form_error,
    login,
)
from tests.e2e.test_two_step import user_with_totp, verify
from tests.mail_server import MailServer

CHINESE = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en-GB,en;q=0.9"}
ALICE = "alice@example.com"


def field(html: str, name: str) -> str:
    """The <input> tag of the field with id ``name``."""
    match = re.search(rf'<input id="{name}"[^>]*>', html)
    assert match, f"no field {name}"
    return match.group(0)


def described_by(tag: str) -> list[str]:
    match = re.search(r'aria-describedby="([^"]*)"', tag)
    return match.group(1).split() if match else []


def assert_invalid(html: str, *names: str) -> None:
    """Each named field says it is in error and points at the error summary."""
    for name in names:
        tag = field(html, name)
        assert 'aria-invalid="true"' in tag, tag
        assert "form-error" in described_by(tag), tag


def assert_valid(html: str, *names: str) -> None:
    for name in names:
        assert "aria-invalid" not in field(html, name), field(html, name)


def assert_summary_alone_has_focus(html: str) -> None:
    """The error summary is focused on load, and nothing else claims the focus."""
    assert re.search(r'<div [^>]*id="form-error"[^>]*autofocus', html), html[:2000]
    assert html.count("autofocus") == 1


def text_of(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content())


async def test_a_failed_sign_in_in_chinese_names_both_fields_and_focuses_the_message(
    site: Site,
) -> None:
    await site.create_user("alice")
    async with site.client(headers=CHINESE) as browser:
        page = await browser.get("/login")
        assert page.headers["content-language"] == "zh-CN"
        assert '<html lang="zh-CN">' in page.text
        refused = await login(browser, "alice", "not the password")
    assert refused.status_code == 400
    assert form_error(refused.text) == "用户名或密码错误。"
    assert "<title>错误" in refused.text
    assert_invalid(refused.text, "username", "password")
    assert_summary_alone_has_focus(refused.text)


async def test_a_throttled_sign_in_says_how_long_and_marks_no_field(site: Site) -> None:
    await site.create_user("alice")
    async with site.client(headers=CHINESE) as browser:
        answers = [await login(browser, "alice", f"wrong {n}") for n in range(12)]
    throttled = next(a for a in answers if a.status_code == 429)
    message = form_error(throttled.text)
    assert message is not None
    assert re.search(r"\d+ (秒|分钟|小时)", message), message
    assert_valid(throttled.text, "username", "password")
    assert_summary_alone_has_focus(throttled.text)


async def test_the_sign_in_page_gives_the_passkey_script_its_messages_in_chinese(
    site: Site,
) -> None:
    async with site.client(headers=CHINESE) as browser:
        page = (await browser.get("/login")).text
    script = re.search(r'<script src="[^"]*passkeys\.js"[^>]*>', page)
    assert script, "no passkeys.js"
    for name in ("failed", "cancelled", "exists", "unsupported"):
        value = re.search(rf'data-msg-{name}="([^"]+)"', script.group(0))
        assert value, name
        assert re.search(r"[\u4e00-\u9fff]", value.group(1)), value.group(1)
    assert "使用通行密钥登录" in page


async def test_a_refused_passkey_is_explained_in_the_browsers_language(site: Site) -> None:
    async with site.client(headers=CHINESE) as browser:
        token = CSRF_META.search((await browser.get("/login")).text)
        assert token
        headers = {**ORIGIN, "Accept": "application/json", "X-CSRF-Token": token.group(1)}
        await browser.post("/login/passkey/options", json={}, headers=headers)
        answer = await browser.post(
            "/login/passkey", json={"credential": {"id": "bm9uZQ"}}, headers=headers
        )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "passkey_refused",
        "detail": "无法使用该通行密钥。请重试，或改用其他方式登录。",
    }


async def test_a_wrong_second_factor_in_chinese_marks_the_field_it_came_from(site: Site) -> None:
    await user_with_totp(site)
    async with site.client(headers=CHINESE) as browser:
        assert (await login(browser, "alice")).status_code == 303
        wrong_code = await verify(browser, code="000000")
        assert wrong_code.status_code == 400
        assert form_error(wrong_code.text) == "验证码无效。请检查设备上的时间后重试。"
        assert_invalid(wrong_code.text, "code")
        assert_valid(wrong_code.text, "recovery_code")
        assert_summary_alone_has_focus(wrong_code.text)

        wrong_recovery = await verify(browser, recovery_code="not-a-code")
        assert wrong_recovery.status_code == 400
        assert form_error(wrong_recovery.text) == "该恢复码无效或已被使用。"
        assert_invalid(wrong_recovery.text, "recovery_code")
        assert_valid(wrong_recovery.text, "code")
        # The recovery code's form is open, its hint still linked.
        assert '<details class="recovery" open>' in wrong_recovery.text
        assert "recovery-code-hint" in described_by(field(wrong_recovery.text, "recovery_code"))


async def test_the_expired_second_step_notice_names_its_lifetime_in_chinese(site: Site) -> None:
    async with site.client(headers=CHINESE) as browser:
        page = await browser.get("/login?done=verify-expired")
    assert "此次登录已失效：登录验证的有效期为 5 分钟" in page.text


async def test_registration_refusals_mark_the_fields_they_are_about(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await site_factory(make_settings(registration="open"))
    await site.create_user("alice", email=ALICE)
    async with site.client(headers=CHINESE) as browser:

        async def register(**fields: str) -> httpx.Response:
            page = await browser.get("/register")
            form = {"email": "", "csrf_token": csrf_from(page.text), **fields}
            return await browser.post("/register", data=form, headers=ORIGIN)

        short = await register(username="bob", password="short", password_confirm="short")
        assert short.status_code == 400
        assert form_error(short.text) == "密码至少需要 8 个字符。"
        assert_invalid(short.text, "password")
        assert_valid(short.text, "username", "email", "password_confirm")
        assert "password-hint" in described_by(field(short.text, "password"))
        assert_summary_alone_has_focus(short.text)

        differ = await register(
            username="bob", password=PASSWORD, password_confirm=PASSWORD + " again"
        )
        assert form_error(differ.text) == "两次输入的密码不一致。"
        assert_invalid(differ.text, "password_confirm")
        assert_valid(differ.text, "password")

        taken = await register(username="Alice", password=PASSWORD, password_confirm=PASSWORD)
        assert taken.status_code == 400
        assert form_error(taken.text) == "使用此用户名或电子邮件地址的账户已存在。"
        assert_invalid(taken.text, "username")

        spaced = await register(username="bob b", password=PASSWORD, password_confirm=PASSWORD)
        assert form_error(spaced.text) == "用户名中不能包含空格。"
        assert_invalid(spaced.text, "username")
        assert_valid(spaced.text, "password")


# ---- mails --------------------------------------------------------------------------------


@pytest.fixture
async def mail_site(
    site_factory: SiteFactory, make_settings: MakeSettings, mail_server: MailServer
) -> Site:
    settings: Settings = make_settings(**mail_server.settings())
    site: Site = await site_factory(settings)
    await site.create_user("alice", email=ALICE)
    return site


async def ask_for_reset(client: httpx.AsyncClient) -> httpx.Response:
    page = await client.get("/password/forgot")
    form = {"email": ALICE, "csrf_token": csrf_from(page.text)}
    return await client.post("/password/forgot", data=form, headers=ORIGIN)


async def settle(site: Site) -> None:
    await site.bastion.services.recovery.settle()
    assert await site.bastion.services.mailer.wait_idle(30)


async def test_a_reset_asked_for_in_chinese_is_mailed_in_chinese(
    mail_site: Site, mail_server: MailServer
) -> None:
    async with mail_site.client(headers=CHINESE) as browser:
        asked = await ask_for_reset(browser)
    assert asked.status_code == 200
    assert "如果有账户使用该地址，我们已向其发送了设置新密码的链接。" in asked.text
    await settle(mail_site)
    [mail] = await mail_server.receive(1)
    assert mail["To"] == ALICE
    assert mail["Subject"] == "设置你在 Bastion 的新密码"
    text, html = text_of(mail, "plain"), text_of(mail, "html")
    assert text.startswith("alice，你好：")
    assert "有人（希望是你本人）申请为你在 Bastion 的账户设置新密码。" in text
    assert re.search(r"该链接在 \d+ (分钟|小时|天)内有效", text), text
    assert "此邮件由 Bastion 自动发送，请勿回复。" in text
    assert '<html lang="zh-CN">' in html
    assert ">设置新密码</a>" in html
    assert "Hello" not in text + html


async def test_a_mail_goes_in_the_recipients_own_language_whatever_the_request(
    mail_site: Site, mail_server: MailServer
) -> None:
    user = await mail_site.bastion.services.users.get_by_username("alice")
    assert user is not None
    await mail_site.bastion.accounts.set_language(user.id, "zh-CN")
    async with mail_site.client(headers=ENGLISH) as browser:
        asked = await ask_for_reset(browser)
    assert "If an account uses that address" in asked.text  # the page: the request's language
    await settle(mail_site)
    [mail] = await mail_server.receive(1)
    assert mail["Subject"] == "设置你在 Bastion 的新密码"  # the mail: alice's own choice
    assert re.search(r"该链接在 \d+ (分钟|小时|天)内有效", text_of(mail, "plain"))

    await mail_site.bastion.accounts.set_language(user.id, "en")
    async with mail_site.client(headers=CHINESE) as browser:
        await ask_for_reset(browser)
    await settle(mail_site)
    [_, second] = await mail_server.receive(2)
    assert second["Subject"] == "Choose a new password for Bastion"
    assert "It works once, for " in text_of(second, "plain")


async def test_the_reset_form_in_chinese_marks_the_new_password_the_policy_refused(
    mail_site: Site, mail_server: MailServer
) -> None:
    async with mail_site.client(headers=CHINESE) as browser:
        await ask_for_reset(browser)
        await settle(mail_site)
        [mail] = await mail_server.receive(1)
        link = re.search(r"http://testserver(/password/reset/\S+)", text_of(mail, "plain"))
        assert link
        assert (await browser.get(link.group(1))).status_code == 303
        page = await browser.get("/password/reset")
        form = {
            "new_password": "alice-alice-alice",
            "new_password_confirm": "alice-alice-alice",
            "csrf_token": csrf_from(page.text),
        }
        refused = await browser.post("/password/reset", data=form, headers=ORIGIN)
    assert refused.status_code == 400
    assert form_error(refused.text) == "密码中不能包含用户名。"
    assert_invalid(refused.text, "new_password")
    assert_valid(refused.text, "new_password_confirm")
    assert "password-hint" in described_by(field(refused.text, "new_password"))
    assert_summary_alone_has_focus(refused.text)
