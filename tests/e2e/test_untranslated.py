"""No English left on a Chinese page: every page of the inventory (tests/page_inventory.py),
in its normal and error states, rendered in zh-CN through the app in process, and every
e-mail the scenarios sent (subject, text and HTML), read for English words.

What a person sees is read: text (not scripts or styles) and the attributes shown or
spoken (title, aria-label, placeholder, alt, the value of a button). Text marked
``lang="en"`` (the switcher's "English") and ``<code>`` (keys, recovery codes) are not
English sentences; product and technical names, the users and addresses the test made are
allowed (``ALLOWED``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bastion.settings import Settings
from tests.e2e.conftest import BASE, CSRF_META, ORIGIN, Site, SiteFactory
from tests.page_inventory import (
    ALL_USERS,
    LANGUAGES,
    PASSWORD,
    PROVIDER_SETTINGS,
    SCENARIOS,
    AddPasskey,
    Check,
    Goto,
    MailLink,
    RepeatUntil,
    Step,
    Submit,
    mail_link,
    passkey_name,
    read_outbox,
    site_settings,
)
from tests.soft_authenticator import SoftAuthenticator

LANGUAGE = "zh-CN"
# Names of products, protocols and codes, the same in a Chinese sentence.
ALLOWED = {
    "Bastion", "TOTP", "URL", "Google", "GitHub", "IP", "API", "UTC", "QR", "ID",
    "OpenID", "Microsoft", "Keycloak", "WebAuthn", "FIDO", "HTTP", "HTTPS", "JSON",
    "CSRF", "SMTP", "Chrome", "Chromium", "Firefox", "Safari", "Linux", "Windows",
    "macOS", "Android", "iOS", "iPhone", "iPad", "Swagger", "OAuth", "Authy", "YubiKey",
    "iCloud", "PIN", "JavaScript", "Aegis",
}  # fmt: skip
# Names of more than one word (each word alone may be an English word left untranslated).
PHRASES = (
    "Google Authenticator",
    "Microsoft Authenticator",
    "Microsoft Entra ID",
    "OpenID Connect",
    "Microsoft Edge",
    "Corp ID",  # the test's provider label
)
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
# Data, not interface: the built-in roles' names (an operator's own roles are named by them).
ROLE_NAMES = {"admin", "user"}
# Words of 2+ Latin letters (a lone letter is a unit or a list marker).
WORD = re.compile(r"(?<![0-9A-Za-z])[A-Za-z][A-Za-z'’-]*[A-Za-z]")
ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
LINK = re.compile(r"https?://\S+")
SHOWN_ATTRIBUTES = ("title", "aria-label", "placeholder", "alt", "aria-description")


def shown(attribute: str) -> bool:
    """Attributes a person sees or hears: the usual ones, a table cell's ``data-label``
    (its column's name on a narrow screen) and passkeys.js's ``data-msg-*`` messages."""
    return (
        attribute in SHOWN_ATTRIBUTES
        or attribute == "data-label"
        or attribute.startswith("data-msg-")
    )


SKIPPED_ELEMENTS = {"script", "style", "code", "kbd", "samp", "template"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}  # fmt: skip


class VisibleText(HTMLParser):
    """The text and shown attributes of a page, outside scripts, styles, code and
    elements marked as English."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._stack: list[bool] = []  # per open element: whether its content is skipped

    def _skipping(self) -> bool:
        return bool(self._stack) and self._stack[-1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        english = values.get("lang", "").lower().startswith("en")
        outside = self._skipping() or english
        if not outside:
            self.parts.extend(value for name, value in values.items() if shown(name))
            if tag == "input" and values.get("type") in ("submit", "button", "reset"):
                self.parts.append(values.get("value", ""))
        if tag not in VOID:
            self._stack.append(outside or tag in SKIPPED_ELEMENTS)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if not self._skipping():
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    parser.close()
    return "\n".join(part.strip() for part in parser.parts if part.strip())


def english_words(text: str, names: Iterable[str] = ()) -> list[str]:
    """The English words of ``text`` outside the allow-list; addresses, links and the
    ``names`` the test gave (users) are dropped first."""
    text = LINK.sub(" ", ADDRESS.sub(" ", text))
    for phrase in PHRASES:
        text = text.replace(phrase, " ")
    for name in sorted(names, key=len, reverse=True):
        text = re.sub(rf"(?<![\w]){re.escape(name)}(?![\w])", " ", text)
    return [word for word in WORD.findall(text) if word not in ALLOWED | ROLE_NAMES]


def lines_with_english(text: str, allowed: Iterable[str] = ()) -> list[str]:
    allowed = list(allowed)
    return [line for line in text.splitlines() if english_words(line, allowed)]


# --- following the inventory over HTTP -------------------------------------------------


@dataclass
class Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._open: Form | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._open = Form(values.get("action", ""))
            self.forms.append(self._open)
            return
        form = self._open
        if form is None or "name" not in values:
            return
        name = values["name"]
        kind = values.get("type", "submit" if tag == "button" else "text")
        if tag == "button" or kind == "submit":
            form.buttons.append((name, values.get("value", "")))
        elif tag in ("input", "select", "textarea"):
            form.names.add(name)
            if kind in ("checkbox", "radio") and "checked" not in values:
                return
            form.fields[name] = values.get("value", "on" if kind == "checkbox" else "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def find_form(html: str, action: str, names: Iterable[str]) -> Form:
    parser = Forms()
    parser.feed(html)
    wanted = set(names)
    for form in parser.forms:
        if action.endswith("*"):
            matches = form.action.startswith(action[:-1])
        else:
            matches = form.action == action
        if matches and wanted <= form.names:
            return form
    raise AssertionError(f"no form to {action} with fields {sorted(wanted)} on the page")


@dataclass
class Seen:
    label: str
    status: int
    html: str


class HttpRunner:
    """Follows a scenario with an httpx client; ``seen`` collects each checked page."""

    def __init__(self, client: httpx.AsyncClient, outbox: Path) -> None:
        self.client = client
        self.outbox = outbox
        self.response: httpx.Response | None = None
        self.seen: list[Seen] = []
        # A checked page not in the state the scenario expects (its status, its element).
        self.problems: list[str] = []

    @property
    def html(self) -> str:
        assert self.response is not None, "no page yet"
        return self.response.text

    async def run(self, steps: list[Step]) -> None:
        for step in steps:
            await self.step(step)

    async def step(self, step: Step) -> None:
        if isinstance(step, Goto):
            self.response = await self.client.get(step.path, follow_redirects=True)
        elif isinstance(step, Submit):
            await self.submit(step)
        elif isinstance(step, RepeatUntil):
            for _ in range(step.tries):
                await self.submit(step.step)
                if self.response is not None and self.response.status_code == step.status:
                    break
        elif isinstance(step, AddPasskey):
            await self.add_passkey(step.name)
        elif isinstance(step, MailLink):
            # In a thread: the app sends mail from a task of this event loop.
            path = await asyncio.to_thread(mail_link, self.outbox, step.to, step.pattern)
            self.response = await self.client.get(path, follow_redirects=True)
        else:
            assert isinstance(step, Check)
            assert self.response is not None
            status = self.response.status_code
            where = f"{step.label} ({self.response.url.path})"
            if status != step.status:
                self.problems.append(f"{where}: status {status}, not {step.status}")
            if step.has is not None and f'id="{step.has}"' not in self.html:
                self.problems.append(f"{where}: no #{step.has}")
            self.seen.append(Seen(step.label, status, self.html))

    async def submit(self, step: Submit) -> None:
        form = find_form(self.html, step.action, step.fields)
        data: dict[str, str] = dict(form.fields)
        for name, value in step.fields.items():
            data[name] = value if isinstance(value, str) else value(self.html)
        if step.button is not None:
            data[step.button[0]] = step.button[1]
        elif form.buttons and form.buttons[0][0]:
            data[form.buttons[0][0]] = form.buttons[0][1]
        self.response = await self.client.post(
            form.action, data=data, headers=ORIGIN, follow_redirects=True
        )

    async def add_passkey(self, name: str) -> None:
        """What passkeys.js does on /account/security, with a software authenticator."""
        match = CSRF_META.search(self.html)
        assert match, "the page has no csrf-token meta tag"
        headers = {**ORIGIN, "Accept": "application/json", "X-CSRF-Token": match.group(1)}
        options = await self.client.post("/account/passkeys/options", json={}, headers=headers)
        assert options.status_code == 200, options.text
        answer = SoftAuthenticator(BASE).create(options.json())
        added = await self.client.post(
            "/account/passkeys", json={"credential": answer, "name": name}, headers=headers
        )
        assert added.status_code == 201, added.text
        self.response = await self.client.get(added.json()["redirect"])


# --- the site -----------------------------------------------------------------------


@dataclass
class Inventory:
    site: Site
    outbox: Path


@pytest_asyncio.fixture
async def inventory(
    site_factory: SiteFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Inventory:
    """The inventory's site (for a scenario parameter, the settings that scenario needs),
    with its users."""
    for name, value in PROVIDER_SETTINGS.items():
        monkeypatch.setenv(name, value)
    callspec = getattr(request.node, "callspec", None)
    scenario = callspec.params.get("scenario") if callspec is not None else None
    data = tmp_path / "data"
    fields: dict[str, Any] = site_settings(scenario)
    settings = Settings(env="test", data_dir=data, session_store="memory", **fields)
    site = await site_factory(settings)
    for user in ALL_USERS:
        await site.create_user(user.name, PASSWORD, roles=("admin",) if user.admin else ())
    return Inventory(site, data / "outbox")


@pytest_asyncio.fixture
async def chinese_client(inventory: Inventory) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Accept-Language": LANGUAGE, "User-Agent": CHROME}
    async with inventory.site.client(headers=headers) as client:
        yield client


def user_words() -> set[str]:
    """What the test itself typed: user names, passkey names."""
    typed = {
        f"{stem}_{s}"
        for stem in ("nobody", "ghost", "newbie", "newcomer", "x", "made")
        for s in ("en", "zh")
    }
    for language in LANGUAGES:
        typed |= {passkey_name(language), passkey_name(language) + "-2"}
    return {user.name for user in ALL_USERS} | typed


def report(findings: Mapping[str, list[str]]) -> str:
    lines = ["English left in zh-CN:"]
    for where, found in findings.items():
        if not found:
            continue
        lines.append(f"- {where}:")
        lines.extend(f"    {line}" for line in found[:12])
    return "\n".join(lines)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_every_page_in_chinese_has_no_english_left(
    scenario: str, inventory: Inventory, chinese_client: httpx.AsyncClient
) -> None:
    runner = HttpRunner(chinese_client, inventory.outbox)
    await runner.run(SCENARIOS[scenario](LANGUAGE))
    assert runner.seen, "the scenario checked no page"
    findings: dict[str, list[str]] = {"not in the expected state": runner.problems}
    for page in runner.seen:
        assert f'<html lang="{LANGUAGE}"' in page.html, f"{page.label}: <html lang> is not zh-CN"
        found = lines_with_english(visible_text(page.html), user_words())
        if found:
            findings[page.label] = found
    if any(findings.values()):
        pytest.fail(report(findings), pytrace=False)


def mail_parts(message: EmailMessage) -> dict[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None, f"{message['Subject']}: no text part"
    assert html is not None, f"{message['Subject']}: no HTML part"
    return {
        "subject": str(message["Subject"]),
        "text": text.get_content(),
        "html": visible_text(html.get_content()),
    }


async def test_every_mail_in_chinese_has_no_english_left(
    inventory: Inventory, chinese_client: httpx.AsyncClient
) -> None:
    """Sign-up (address verification), a forgotten password (reset link), and an address
    change (link to the new address, notice to the old one), asked for in Chinese."""
    runner = HttpRunner(chinese_client, inventory.outbox)
    await runner.run(SCENARIOS["registration"](LANGUAGE))
    old, new = "newbie_zh@example.com", "newbie_zh.new@example.com"
    await runner.run(
        [
            Goto("/login"),
            Submit("/login", {"username": "newbie_zh", "password": PASSWORD}),
            Goto("/account/email"),
            Submit("/account/email", {"email": new, "current_password": PASSWORD}),
            MailLink(new, r"^/email/verify/"),
            Check("address change confirmed"),
        ]
    )
    messages = read_outbox(inventory.outbox)
    kinds = {str(m["To"]) for m in messages}
    assert old in kinds, kinds
    assert new in kinds, kinds
    assert len(messages) >= 4, [str(m["Subject"]) for m in messages]
    findings: dict[str, list[str]] = {}
    for index, message in enumerate(messages):
        for part, text in mail_parts(message).items():
            found = lines_with_english(text, user_words())
            if found:
                findings[f"mail {index + 1} to {message['To']} ({part})"] = found
    if findings:
        pytest.fail(report(findings), pytrace=False)


async def test_an_error_page_before_the_session_middleware_is_in_chinese(
    inventory: Inventory, chinese_client: httpx.AsyncClient
) -> None:
    """Headers too large (431) are refused before sessions are read: still in Chinese."""
    response = await chinese_client.get("/login", headers={"X-Filler": "x" * 70_000})
    assert response.status_code == 431
    assert f'<html lang="{LANGUAGE}"' in response.text
    found = lines_with_english(visible_text(response.text))
    if found:
        pytest.fail(report({"error 431": found}), pytrace=False)


def test_the_text_reader_sees_what_a_person_sees() -> None:
    html = (
        "<html><head><title>登录 Sign in</title><style>.a{color:red}</style></head><body>"
        '<script>var english = "words";</script><p>你好 <b>world</b></p>'
        '<a title="Help me" href="/x">帮助</a><input type="submit" value="Send">'
        '<input type="hidden" name="csrf" value="token"><span lang="en">English</span>'
        '<code>abcd-efgh</code><img alt="A picture"><td data-label="Device">设备</td>'
        '<script src="/x.js" data-msg-failed="It failed"></script></body></html>'
    )
    text = visible_text(html)
    assert english_words(text) == [
        *("Sign", "in", "world", "Help", "me", "Send", "picture", "Device", "It", "failed")
    ]
    assert english_words("用户 alice 的 GitHub 账户 alice@example.com", ["alice"]) == []
    assert english_words("Google Authenticator、1Password 或 Aegis 等应用") == []
    assert english_words("Authenticator 应用 Connect") == ["Authenticator", "Connect"]


async def test_the_api_docs_page_title_is_in_chinese(chinese_client: httpx.AsyncClient) -> None:
    """/docs is Swagger UI, whose interface is English (the page says so with lang="en");
    its title, Bastion's own, is Chinese."""
    response = await chinese_client.get("/docs")
    assert response.status_code == 200
    title = re.search(r'<title lang="zh-CN">([^<]+)</title>', response.text)
    assert title is not None, "the /docs title is not marked as Chinese"
    assert english_words(title.group(1)) == []
