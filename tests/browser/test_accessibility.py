"""axe-core over every page Bastion renders (tests/page_inventory.py), in English and in
Simplified Chinese, in normal and error states, in headless Chromium against a real
``bastion serve``: WCAG 2.0/2.1/2.2 A and AA rules and axe's best practices, no violation
allowed. Each checked page is also laid out 320 CSS px wide (WCAG 1.4.10 reflow): nothing
may scroll sideways there, and pages with tables are checked by axe again at that width.
In the dark colour scheme (prefers-color-scheme) the colour rules run again. Each page
must say its language in <html lang>, and an error state must start with the focus on its
error summary (#form-error).

axe-core comes from npm (tests/axe/package-lock.json), installed by ``npm ci`` into
tests/axe/node_modules (git-ignored) once per lock file, under a file lock, like the
OpenID Connect provider of tests/oidc. The pages' CSP allows no script of ours, so the
browser context bypasses CSP to inject axe.min.js.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Route,
    ViewportSize,
    sync_playwright,
)

from tests.browser.conftest import CHROMIUM_ARGS, chromium_path, focus_on_arrival
from tests.browser.test_passkeys import AUTHENTICATOR, NO_CONDITIONAL_UI
from tests.conftest import backend_missing
from tests.live import LiveServer, live_server
from tests.page_inventory import (
    ALL_USERS,
    DEAD,
    LANGUAGES,
    PASSWORD,
    SCENARIO_SETTINGS,
    SCENARIOS,
    AddPasskey,
    Check,
    Goto,
    MailLink,
    RepeatUntil,
    Step,
    Submit,
    mail_link,
    site_environment,
)

pytestmark = pytest.mark.browser

AXE_DIR = Path(__file__).resolve().parent.parent / "axe"
AXE_SCRIPT = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
AXE_STAMP = AXE_DIR / "node_modules" / ".bastion-installed"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
COLOUR_RULES = ["color-contrast", "link-in-text-block"]
WIDE: ViewportSize = {"width": 1100, "height": 800}
NARROW: ViewportSize = {"width": 320, "height": 640}
OPEN_FORM = "f => { f.noValidate = true; const d = f.closest('details'); if (d) d.open = true; }"


def install_axe() -> Path:
    """``npm ci`` in tests/axe once per lock file; other workers wait on the lock."""
    npm = shutil.which("npm")
    if npm is None:
        backend_missing("npm is needed to install axe-core (tests/axe)")
    assert npm is not None
    wanted = hashlib.sha256((AXE_DIR / "package-lock.json").read_bytes()).hexdigest()
    with open(AXE_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (AXE_STAMP.exists() and AXE_STAMP.read_text() == wanted):
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=AXE_DIR,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if result.returncode != 0:
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                backend_missing(f"npm ci in tests/axe failed (is the registry reachable?): {last}")
            AXE_STAMP.write_text(wanted)
    return AXE_SCRIPT


@dataclass
class Site:
    live: LiveServer
    outbox: Path


# What ``bastion users create`` does, for every user in one process (one start-up, not six).
CREATE_USERS = """
import asyncio, json, sys
from bastion.services import open_services
from bastion.settings import Settings

async def main():
    services = await open_services(Settings())
    try:
        for name, roles in json.loads(sys.argv[1]):
            await services.accounts.create(name, sys.argv[2], email=None, roles=roles)
    finally:
        await services.aclose()

asyncio.run(main())
"""


def create_users(live: LiveServer) -> None:
    """The inventory's users, in its order (alice is user 1, bob user 2)."""
    users = [(user.name, ["admin"] if user.admin else []) for user in ALL_USERS]
    made = subprocess.run(
        [sys.executable, "-c", CREATE_USERS, json.dumps(users), PASSWORD],
        env=live.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Site]]:
    """The site of a scenario, started when first needed: one ``bastion serve`` for the
    inventory's settings, another for each scenario that needs other settings."""
    started: dict[str, Site] = {}
    with ExitStack() as stack:

        def site_for(scenario: str) -> Site:
            key = scenario if scenario in SCENARIO_SETTINGS else ""
            if key not in started:
                data = tmp_path_factory.mktemp("a11y") / "data"
                data.mkdir()
                live = stack.enter_context(live_server(data, site_environment(key or None)))
                create_users(live)
                started[key] = Site(live, data / "outbox")
            return started[key]

        yield site_for


@pytest.fixture(scope="module")
def axe_script() -> str:
    return install_axe().read_text()


@pytest.fixture(scope="module")
def module_browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_context(browser: Browser, language: str) -> BrowserContext:
    """A context that asks for ``language`` (Accept-Language), may inject axe (CSP
    bypassed), and answers the dead provider's address with 204 (the browser stays on the
    page that would go on to it)."""
    context = browser.new_context(viewport=WIDE, locale=language, bypass_csp=True)

    def stay(route: Route) -> None:
        route.fulfill(status=204)

    context.route(f"{DEAD}/**", stay)
    return context


def describe(violations: list[dict[str, Any]], where: str) -> list[str]:
    lines = []
    for violation in violations:
        targets = [" ".join(map(str, node["target"])) for node in violation["nodes"]]
        shown = ", ".join(targets[:4]) + (f" (+{len(targets) - 4})" if len(targets) > 4 else "")
        lines.append(f"{where}: {violation['id']} ({violation['impact']}): {shown}")
    return lines


def run_axe(page: Page, script: str, rules: list[str] | None = None) -> list[dict[str, Any]]:
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=script)
    options: dict[str, Any] = {"resultTypes": ["violations"]}
    if rules is None:
        options["runOnly"] = {"type": "tag", "values": AXE_TAGS}
    else:
        options["runOnly"] = {"type": "rule", "values": rules}
    result: dict[str, Any] = page.evaluate("options => axe.run(document, options)", options)
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def sideways_overflow(page: Page) -> int:
    """How many CSS px the page scrolls sideways (0: none)."""
    overflow: int = page.evaluate(
        "() => document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
    )
    return overflow


@dataclass
class BrowserRunner:
    """Follows a scenario in a page; every ``Check`` runs axe and the 320 px checks."""

    page: Page
    base: str
    outbox: Path
    axe: str
    language: str
    status: int = 0
    findings: list[str] = field(default_factory=list)
    checked: int = 0
    authenticator: bool = False

    def run(self, steps: list[Step]) -> None:
        for step in steps:
            self.step(step)

    def step(self, step: Step) -> None:
        if isinstance(step, Goto):
            self.goto(step.path)
        elif isinstance(step, Submit):
            self.submit(step)
        elif isinstance(step, RepeatUntil):
            for _ in range(step.tries):
                self.submit(step.step)
                if self.status == step.status:
                    break
        elif isinstance(step, AddPasskey):
            self.add_passkey(step.name)
        elif isinstance(step, MailLink):
            self.goto(mail_link(self.outbox, step.to, step.pattern))
        else:
            assert isinstance(step, Check)
            self.check(step)

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base + path)
        self.status = response.status if response is not None else 0

    def submit(self, step: Submit) -> None:
        if step.action.endswith("*"):
            form = self.page.locator(f'form[action^="{step.action[:-1]}"]')
        else:
            form = self.page.locator(f'form[action="{step.action}"]')
        for name in step.fields:
            form = form.filter(has=self.page.locator(f'[name="{name}"]'))
        form = form.first
        # Server-side error states: the browser's own checks (required, type=email) would
        # stop these forms first. A form in a closed <details> is opened, as a person would.
        form.evaluate(
            "f => { f.noValidate = true; const d = f.closest('details'); if (d) d.open = true; }"
        )
        for name, value in step.fields.items():
            text = value if isinstance(value, str) else value(self.page.content())
            form.locator(f'[name="{name}"]').first.fill(text)
        if step.button is not None:
            name, value = step.button
            button = form.locator(f'[type="submit"][name="{name}"][value="{value}"]')
        else:
            button = form.locator('button:not([type="button"]), input[type="submit"]')
        with self.page.expect_navigation() as navigation:
            button.first.click()
        response = navigation.value
        self.status = response.status if response is not None else 0

    def add_passkey(self, name: str) -> None:
        """Attach a virtual authenticator (once) and add a passkey with the page's form.
        From then on the sign-in page offers passkeys by its button, not by the field's
        autofill, which the virtual authenticator would answer at once."""
        page = self.page
        if not self.authenticator:
            page.context.add_init_script(NO_CONDITIONAL_UI)
            cdp = page.context.new_cdp_session(page)
            cdp.send("WebAuthn.enable", {"enableUI": False})
            cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
            self.authenticator = True
            page.reload()  # the page's script sees the authenticator from the start
        form = page.locator('form[data-passkey="create"]')
        form.locator('[name="name"]').fill(name)
        with page.expect_navigation() as navigation:
            form.locator('button[type="submit"]').click()
        response = navigation.value
        self.status = response.status if response is not None else 0

    def check(self, step: Check) -> None:
        page = self.page
        where = f"[{self.language}] {step.label} ({page.url.removeprefix(self.base)})"
        self.checked += 1
        if self.status != step.status:
            self.findings.append(f"{where}: status {self.status}, not {step.status}")
        if step.has is not None and page.locator(f"#{step.has}").count() == 0:
            self.findings.append(f"{where}: no #{step.has}")
        # The form pattern: an error summary takes the focus when the page loads.
        if step.has == "form-error":
            active = focus_on_arrival(page)
            if active != "form-error":
                self.findings.append(f"{where}: the focus is on #{active}, not #form-error")
        # WCAG 3.1.1: the page says which language it is in (axe checks only that the tag
        # is valid).
        lang = page.locator("html").get_attribute("lang")
        if lang != self.language:
            self.findings.append(f"{where}: <html lang={lang!r}>, not {self.language!r}")
        self.findings += describe(run_axe(page, self.axe), where)
        page.emulate_media(color_scheme="dark")
        self.findings += describe(run_axe(page, self.axe, COLOUR_RULES), where + " dark")
        page.emulate_media(color_scheme="light")
        page.set_viewport_size(NARROW)
        overflow = sideways_overflow(page)
        if overflow > 0:
            self.findings.append(f"{where}: scrolls sideways by {overflow} px at 320 px")
        if step.table:
            self.findings += describe(run_axe(page, self.axe), where + " 320px")
        page.set_viewport_size(WIDE)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_page_passes_axe_and_fits_320_px(
    scenario: str,
    language: str,
    sites: Callable[[str], Site],
    module_browser: Browser,
    axe_script: str,
) -> None:
    site = sites(scenario)
    context = new_context(module_browser, language)
    try:
        # localhost, not 127.0.0.1: passkeys need a domain for their relying party.
        base = site.live.url.replace("127.0.0.1", "localhost")
        runner = BrowserRunner(context.new_page(), base, site.outbox, axe_script, language)
        runner.run(SCENARIOS[scenario](language))
    finally:
        context.close()
    assert runner.checked, "the scenario checked no page"
    if runner.findings:
        pytest.fail(
            f"{len(runner.findings)} accessibility finding(s):\n" + "\n".join(runner.findings),
            pytrace=False,
        )
