"""The account and admin pages in Chinese and English, and what WCAG 2.2 AA asks of them:
an error state says so in the title, marks the fields it is about (aria-invalid,
aria-describedby pointing at the focused error summary), and the buttons of table rows
each name their row (the visible label included)."""

from __future__ import annotations

import re
from collections import Counter
from html import unescape
from html.parser import HTMLParser

import httpx
import pytest

from tests.e2e.conftest import ORIGIN, PASSWORD, Site, csrf_token, form_error, login

NEW_PASSWORD = "a much better passphrase 42"
ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
FIREFOX = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"}


def title_of(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match is not None
    return unescape(match.group(1))


def heading(html: str) -> str:
    match = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    assert match is not None
    return unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def input_tag(html: str, name: str) -> str:
    match = re.search(rf'<input id="{re.escape(name)}"[^>]*>', html)
    assert match is not None, name
    return match.group(0)


def invalid_fields(html: str) -> set[str]:
    return set(re.findall(r'<input id="([^"]+)"[^>]*aria-invalid="true"', html))


def autofocused(html: str) -> list[str]:
    """The id of every element with autofocus."""
    return re.findall(r'<[a-z]+ [^>]*?id="([^"]+)"[^>]*\bautofocus\b', html)


class Controls(HTMLParser):
    """The buttons and button-styled links inside tables: (visible text, accessible name).

    The accessible name is aria-label when there is one, else the text (visually hidden
    text included, as a screen reader reads it)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._tables = 0
        self._open: tuple[str, str | None] | None = None  # tag, aria-label
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self._tables += 1
        is_control = tag == "button" or (tag == "a" and "button" in (attributes.get("class") or ""))
        if self._tables and is_control and self._open is None:
            self._open = (tag, attributes.get("aria-label"))
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._tables -= 1
        if self._open is not None and tag == self._open[0]:
            text = " ".join("".join(self._text).split())
            self.found.append((text, self._open[1] or text))
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)


def row_controls(html: str) -> list[tuple[str, str]]:
    parser = Controls()
    parser.feed(html)
    return parser.found


async def post_form(
    client: httpx.AsyncClient,
    path: str,
    data: dict[str, str],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    form = {"csrf_token": await csrf_token(client, path), **data}
    return await client.post(path, data=form, headers={**ORIGIN, **(headers or {})})


async def signed_in_admin(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("root", roles=("admin",))
    assert (await login(client, "root")).status_code == 303


# -- Chinese ---------------------------------------------------------------------------


ACCOUNT_PAGES = {
    "/dashboard": ("欢迎，alice", "Welcome alice"),
    "/account/sessions": ("你的设备", "Your devices"),
    "/account/password": ("修改密码", "Change password"),
    "/account/email": ("电子邮件地址", "E-mail address"),
    "/account/security": ("安全", "Security"),
    "/account/totp": ("设置身份验证器应用", "Set up an authenticator app"),
}


async def test_the_account_pages_follow_accept_language(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    for path, (chinese, english) in ACCOUNT_PAGES.items():
        page = await client.get(path, headers=ZH)
        assert page.status_code == 200, path
        assert '<html lang="zh-CN">' in page.text, path
        assert page.headers["content-language"] == "zh-CN"
        assert heading(page.text) == chinese, path
        english_page = await client.get(path)
        assert heading(english_page.text) == english, path
    sessions = (await client.get("/account/sessions", headers=ZH)).text
    assert "1 个活动会话" in sessions
    assert 'data-label="设备"' in sessions
    assert "此设备" in sessions
    security = (await client.get("/account/security", headers=ZH)).text
    assert '剩余 <strong id="recovery-codes-left">0</strong> 个恢复码。' in security


async def test_the_admin_pages_follow_the_lang_parameter(
    site: Site, client: httpx.AsyncClient
) -> None:
    await signed_in_admin(site, client)
    bob = await site.create_user("bob", email="bob@example.org")
    expected = {
        "/admin/users": "用户",
        "/admin/sessions": "会话",
        "/admin/audit": "审计日志",
        "/admin/users/new": "新建用户",
        f"/admin/users/{bob}/roles": "bob 的角色",
        f"/admin/users/{bob}/password": "bob 的密码",
        f"/admin/users/{bob}/mfa": "bob 的双重验证",
        f"/admin/users/{bob}/delete": "删除 bob",
    }
    first = True
    for path, title in expected.items():
        # ?lang= once; the bastion_lang cookie it sets keeps the choice for the others.
        page = await client.get(path, params={"lang": "zh-CN"} if first else None)
        first = False
        assert page.status_code == 200, path
        assert '<html lang="zh-CN">' in page.text, path
        assert title_of(page.text) == f"{title} · 管理 · Bastion", path
        assert heading(page.text) == "系统管理", path
        assert '<nav class="tabs" aria-label="管理">' not in page.text
        assert '<nav class="tabs" aria-label="系统管理">' in page.text
    users = (await client.get("/admin/users")).text
    assert 'aria-label="停用 bob"' in users
    assert 'aria-label="双重验证：bob"' in users
    assert "bob@example.org" in users
    # Back in English with the parameter.
    english = await client.get("/admin/users", params={"lang": "en"})
    assert title_of(english.text) == "Users · Admin · Bastion"


async def test_error_pages_and_the_docs_title_are_in_chinese(
    site: Site, client: httpx.AsyncClient
) -> None:
    missing = await client.get("/nowhere", headers={**ZH, "Accept": "text/html"})
    assert missing.status_code == 404
    assert title_of(missing.text) == "找不到页面 · Bastion"
    assert "此地址没有对应的页面。请检查你访问的链接。" in missing.text
    assert "返回首页" in missing.text
    await site.create_user("alice")
    await login(client, "alice")
    forbidden = await client.get("/admin/users", headers=ZH)
    assert forbidden.status_code == 403
    assert title_of(forbidden.text) == "禁止访问 · Bastion"
    assert "你无权执行此操作。" in forbidden.text
    docs = await client.get("/docs", headers=ZH)
    assert '<title lang="zh-CN">API 文档 · Bastion</title>' in docs.text
    assert "<title>API docs · Bastion</title>" in (await client.get("/docs")).text


# -- error states ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "field", "english", "chinese"),
    [
        pytest.param(
            {"current_password": "wrong", "new_password": NEW_PASSWORD},
            "current_password",
            "The current password is not correct.",
            "当前密码错误。",
            id="wrong-current",
        ),
        pytest.param(
            {"current_password": PASSWORD, "new_password": "short"},
            "new_password",
            "at least",
            "至少",
            id="policy",
        ),
        pytest.param(
            {
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "new_password_confirm": NEW_PASSWORD + "x",
            },
            "new_password_confirm",
            "do not match",
            "不一致",
            id="mismatch",
        ),
    ],
)
@pytest.mark.parametrize("language", ["en", "zh-CN"])
async def test_a_refused_password_change_marks_the_field_in_error(
    site: Site,
    client: httpx.AsyncClient,
    form: dict[str, str],
    field: str,
    english: str,
    chinese: str,
    language: str,
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    form = {"new_password_confirm": form.get("new_password", ""), **form}
    headers = ZH if language == "zh-CN" else {}
    response = await post_form(client, "/account/password", form, headers)
    assert response.status_code == 400
    error = form_error(response.text)
    assert error is not None
    assert (chinese if language == "zh-CN" else english) in error
    prefix = "错误：修改密码" if language == "zh-CN" else "Error: Change password"
    assert title_of(response.text).startswith(prefix)
    assert invalid_fields(response.text) == {field}
    assert 'aria-describedby="form-error' in input_tag(response.text, field)
    # The error summary has the focus, nothing else.
    assert autofocused(response.text) == ["form-error"]
    # The hint of the new password stays tied to it, in error or not.
    assert "password-hint" in input_tag(response.text, "new_password")


@pytest.mark.parametrize("language", ["en", "zh-CN"])
async def test_a_refused_admin_password_marks_its_field(
    site: Site, client: httpx.AsyncClient, language: str
) -> None:
    await signed_in_admin(site, client)
    bob = await site.create_user("bob")
    headers = ZH if language == "zh-CN" else {}
    path = f"/admin/users/{bob}/password"
    form = {"new_password": NEW_PASSWORD, "new_password_confirm": "something else"}
    response = await post_form(client, path, form, headers)
    assert response.status_code == 400
    assert invalid_fields(response.text) == {"new_password_confirm"}
    prefix = "错误：bob 的密码" if language == "zh-CN" else "Error: Password of bob"
    assert title_of(response.text).startswith(prefix)
    weak = await post_form(client, path, {"new_password": "bob", "new_password_confirm": "bob"})
    assert invalid_fields(weak.text) == {"new_password"}


async def test_an_admin_refused_on_their_own_account_sees_an_error_state(
    site: Site, client: httpx.AsyncClient
) -> None:
    await signed_in_admin(site, client)
    root = await site.bastion.services.users.get_by_username("root")
    assert root is not None
    page = await client.get(f"/admin/users/{root.id}/delete", headers=ZH)
    assert page.status_code == 400
    assert title_of(page.text).startswith("错误：删除 root")
    assert form_error(page.text) == "你不能删除自己的账户。"
    assert autofocused(page.text) == ["form-error"]


async def test_a_wrong_authenticator_code_marks_the_code_field(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    page = await client.get("/account/totp", headers=ZH)
    assert autofocused(page.text) == ["code"]
    response = await post_form(client, "/account/totp", {"code": "000000"}, ZH)
    assert response.status_code == 400
    assert title_of(response.text).startswith("错误：身份验证器应用")
    assert form_error(response.text) == (
        "验证码不正确。请检查手机上的时间，然后输入当前显示的验证码。"
    )
    assert invalid_fields(response.text) == {"code"}
    assert autofocused(response.text) == ["form-error"]


# -- row buttons -------------------------------------------------------------------------


def assert_named_by_their_rows(html: str, minimum: int) -> list[str]:
    controls = row_controls(html)
    assert len(controls) >= minimum
    names = [name for _, name in controls]
    repeated = [name for name, count in Counter(names).items() if count > 1]
    assert repeated == [], repeated
    for text, name in controls:
        # WCAG 2.5.3: the visible label is part of the name.
        assert text.casefold() in name.casefold(), (text, name)
    return names


@pytest.mark.parametrize("language", ["en", "zh-CN"])
async def test_every_button_of_a_table_row_names_its_row(site: Site, language: str) -> None:
    headers = {**FIREFOX, **(ZH if language == "zh-CN" else {})}
    await site.create_user("root", roles=("admin",))
    for name in ("alice", "bob", "carol"):
        await site.create_user(name)
    async with site.client(headers=headers) as one, site.client(headers=headers) as two:
        # Two sessions from the same browser: their buttons must still differ.
        await login(one, "root")
        await login(two, "root")
        users = (await one.get("/admin/users")).text
        names = assert_named_by_their_rows(users, minimum=3 * 5 + 1)
        if language == "en":
            assert {"Disable alice", "Delete bob", "2FA: second factors of carol"} <= set(names)
        else:
            assert {"停用 alice", "删除 bob", "双重验证：carol"} <= set(names)
        sessions = (await one.get("/admin/sessions")).text
        assert_named_by_their_rows(sessions, minimum=2)
        own = (await one.get("/account/sessions")).text
        names = assert_named_by_their_rows(own, minimum=2)
        current = "(this device)" if language == "en" else "（此设备）"
        assert sum(current in name for name in names) == 1
