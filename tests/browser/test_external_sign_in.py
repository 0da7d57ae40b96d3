"""Headless Chromium signs in to a real ``bastion serve`` through external providers: a real
OpenID Connect provider (tests/oidc: the npm package oidc-provider, with its own login and
consent pages) and the GitHub stand-in (tests/github_standin.py).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.conftest import ARTIFACTS, PASSWORD, sign_in
from tests.github_standin import GitHubStandIn, github_standin
from tests.live import LiveServer, free_port, live_server
from tests.mail_server import MailServer
from tests.oidc_provider import OIDCProvider, oidc_provider

pytestmark = pytest.mark.browser

LABEL = "Corp ID"
ALICE_EMAIL = "alice@example.org"


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCProvider]:
    with oidc_provider(tmp_path_factory.mktemp("oidc")) as running:
        yield running


@contextmanager
def bastion_with(
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    providers: Mapping[str, Mapping[str, str]],
    *,
    port: int | None = None,
    registration: str = "open",
    extra: Mapping[str, str] | None = None,
) -> Iterator[LiveServer]:
    """``bastion serve`` with the providers given (name -> their ``BASTION_OAUTH_<NAME>_*``
    variables, by suffix) and user alice (password, address alice@example.org)."""
    port = port or free_port()
    data = tmp_path / f"data-{port}"
    data.mkdir()
    env = {
        **(extra or {}),
        "BASTION_REDIS_URL": redis_url,
        "BASTION_REDIS_PREFIX": f"{redis_prefix}:federation-{secrets.token_hex(4)}",
        "BASTION_REGISTRATION": registration,
        "BASTION_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "BASTION_OAUTH_PROVIDERS": ",".join(providers),
    }
    for name, variables in providers.items():
        for suffix, value in variables.items():
            env[f"BASTION_OAUTH_{name.upper()}_{suffix}"] = value
    with live_server(data, env, port=port) as live:
        created = live.cli(
            "users",
            "create",
            "alice",
            "--email",
            ALICE_EMAIL,
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        assert created.returncode == 0, created.stderr
        yield live


def corp(provider: OIDCProvider, port: int, **more: str) -> dict[str, str]:
    """The variables of provider ``corp`` at the OpenID Connect provider, with a client
    registered there for this port's callback."""
    client_id, secret = provider.register_client(
        f"http://127.0.0.1:{port}/login/oauth/corp/callback"
    )
    return {
        "ISSUER": provider.issuer,
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": secret,
        "LABEL": LABEL,
        **more,
    }


@pytest.fixture
def server(
    tmp_path: Path, redis_url: str, redis_prefix: str, provider: OIDCProvider
) -> Iterator[LiveServer]:
    port = free_port()
    with bastion_with(
        tmp_path, redis_url, redis_prefix, {"corp": corp(provider, port)}, port=port
    ) as live:
        yield live


def new_page(browser: Browser) -> Page:
    """A page in a new browser context: no cookies, at Bastion or at the provider."""
    return browser.new_context(viewport={"width": 1100, "height": 760}).new_page()


def provider_button(page: Page, label: str = LABEL) -> None:
    page.locator("main").get_by_role("link", name=re.compile(re.escape(label))).click()


def through_provider_pages(page: Page, provider: OIDCProvider, login: str, shot: str = "") -> None:
    """At the provider: its login page (any password for a test account), then its
    consent page."""
    page.wait_for_url(re.compile(re.escape(provider.issuer) + "/interaction/"))
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password")
    if shot:
        page.screenshot(path=str(ARTIFACTS / f"{shot}-provider-login.png"), full_page=True)
    page.get_by_role("button", name="Sign-in").click()
    expect(page.get_by_role("button", name="Continue")).to_be_visible()
    if shot:
        page.screenshot(path=str(ARTIFACTS / f"{shot}-provider-consent.png"), full_page=True)
    page.get_by_role("button", name="Continue").click()


def arrive(page: Page, url: str) -> None:
    """Wait for ``url``; when the browser ends up elsewhere, say where and what it shows."""
    try:
        page.wait_for_url(url, timeout=15_000)
    except PlaywrightTimeoutError:
        text = " ".join(page.locator("main").inner_text().split())[:600]
        raise AssertionError(f"expected {url}, the browser is at {page.url}: {text}") from None


def user_names(server: LiveServer) -> list[str]:
    listed = server.cli("users", "list")
    assert listed.returncode == 0, listed.stderr
    return [line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()]


def test_first_sign_in_makes_an_account_and_the_next_finds_it(
    server: LiveServer, browser: Browser, provider: OIDCProvider
) -> None:
    provider.add_account(
        "grace",
        email="grace@example.org",
        email_verified=True,
        name="Grace Hopper",
        preferred_username="grace",
    )
    page = new_page(browser)
    page.goto(f"{server.url}/login")
    page.screenshot(path=str(ARTIFACTS / "external-login-buttons.png"), full_page=True)
    provider_button(page)
    through_provider_pages(page, provider, "grace", shot="external")

    arrive(page, f"{server.url}/dashboard")
    expect(page.get_by_role("heading", name="Welcome grace")).to_be_visible()
    expect(page.get_by_text("grace@example.org")).to_be_visible()
    # The provider verified the address: so is it here.
    expect(page.locator(".badge", has_text=re.compile("^verified$"))).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "external-dashboard.png"), full_page=True)
    page.goto(f"{server.url}/account/sessions")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.get_by_text("this device")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text("with external provider")
    page.goto(f"{server.url}/account/connections")
    expect(page.locator("main")).to_contain_text(LABEL)
    page.screenshot(path=str(ARTIFACTS / "external-connections.png"), full_page=True)

    # Another browser, the whole way again: the same account, not a second one.
    again = new_page(browser)
    again.goto(f"{server.url}/login")
    provider_button(again)
    through_provider_pages(again, provider, "grace")
    arrive(again, f"{server.url}/dashboard")
    expect(again.get_by_role("heading", name="Welcome grace")).to_be_visible()
    again.goto(f"{server.url}/account/sessions")
    expect(again.locator("tbody tr")).to_have_count(2)
    assert sorted(user_names(server)) == ["alice", "grace"]


def test_a_provider_putting_the_claims_in_the_id_token_signs_in_the_same_way(
    tmp_path: Path, redis_url: str, redis_prefix: str, browser: Browser
) -> None:
    # The session's provider gives the address only at its userinfo endpoint; this one, as
    # Google does, in the ID token itself.
    with oidc_provider(tmp_path, claims_in_id_token=True) as google_like:
        google_like.add_account("linus", email="linus@example.org", email_verified=True)
        port = free_port()
        variables = corp(google_like, port)
        with bastion_with(
            tmp_path, redis_url, redis_prefix, {"corp": variables}, port=port
        ) as live:
            page = new_page(browser)
            page.goto(f"{live.url}/login")
            provider_button(page)
            through_provider_pages(page, google_like, "linus")
            arrive(page, f"{live.url}/dashboard")
            expect(page.get_by_role("heading", name="Welcome linus")).to_be_visible()
            expect(page.get_by_text("linus@example.org")).to_be_visible()


def test_an_unverified_address_does_not_take_over_the_account_that_has_it(
    tmp_path: Path, redis_url: str, redis_prefix: str, browser: Browser, provider: OIDCProvider
) -> None:
    # Even with TRUST_EMAIL on, an address the provider did not verify links nothing.
    provider.add_account("mallory", email=ALICE_EMAIL, email_verified=False, name="Not Alice")
    port = free_port()
    variables = corp(provider, port, TRUST_EMAIL="true")
    with bastion_with(tmp_path, redis_url, redis_prefix, {"corp": variables}, port=port) as live:
        page = new_page(browser)
        page.goto(f"{live.url}/login")
        provider_button(page)
        with page.expect_response(re.compile("/login/oauth/corp/callback")) as answer:
            through_provider_pages(page, provider, "mallory")
        assert answer.value.status == 403, answer.value.text()
        refusal = page.get_by_role("alert").filter(has_text=LABEL)
        expect(refusal).to_contain_text("sign in with its password")
        page.screenshot(path=str(ARTIFACTS / "external-no-takeover.png"), full_page=True)
        page.goto(f"{live.url}/dashboard")
        assert page.url.startswith(f"{live.url}/login")
        assert user_names(live) == ["alice"]

        # Alice's own sign-in is untouched, and nothing is connected to her account.
        sign_in(page, live.url)
        expect(page.get_by_role("heading", name="Welcome alice")).to_be_visible()
        page.goto(f"{live.url}/account/connections")
        expect(page.get_by_role("button", name=re.compile("Disconnect"))).to_have_count(0)


def test_an_address_both_sides_verified_links_to_the_account_when_trusted(
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    browser: Browser,
    provider: OIDCProvider,
    mail_server: MailServer,
) -> None:
    provider.add_account("alice-at-corp", email=ALICE_EMAIL, email_verified=True, name="Alice")
    port = free_port()
    variables = corp(provider, port, TRUST_EMAIL="true")
    mail = {**mail_server.env(), "BASTION_EMAIL_VERIFICATION": "optional"}
    with bastion_with(
        tmp_path, redis_url, redis_prefix, {"corp": variables}, port=port, extra=mail
    ) as live:
        # Alice's own address is verified here first: an unverified one could have been
        # typed by anyone, and links nothing.
        page = new_page(browser)
        sign_in(page, live.url)
        page.get_by_role("button", name="Send a new link").click()
        [message] = mail_server.wait_for(1)
        body = message.get_body(("plain",))
        assert body is not None
        link = re.search(rf"{re.escape(live.url)}/email/verify/\S+", body.get_content())
        assert link is not None
        page.goto(link.group(0))
        page.goto(f"{live.url}/dashboard")
        expect(page.locator(".badge", has_text=re.compile("^verified$"))).to_be_visible()

        other = new_page(browser)
        other.goto(f"{live.url}/login")
        provider_button(other)
        through_provider_pages(other, provider, "alice-at-corp")
        arrive(other, f"{live.url}/dashboard")
        expect(other.get_by_role("heading", name="Welcome alice")).to_be_visible()
        assert user_names(live) == ["alice"]
        other.goto(f"{live.url}/account/connections")
        expect(other.get_by_role("button", name=f"Disconnect {LABEL}")).to_be_visible()


def test_an_unreachable_provider_gives_a_503_page_and_passwords_still_work(
    tmp_path: Path, redis_url: str, redis_prefix: str, browser: Browser, closed_port: int
) -> None:
    down = {
        "ISSUER": f"http://127.0.0.1:{closed_port}",
        "CLIENT_ID": "bastion",
        "CLIENT_SECRET": "not used",
        "LABEL": LABEL,
    }
    with bastion_with(tmp_path, redis_url, redis_prefix, {"corp": down}) as live:
        page = new_page(browser)
        page.goto(f"{live.url}/login")
        with page.expect_response(re.compile("/login/oauth/corp")) as answer:
            provider_button(page)
        assert answer.value.status == 503
        expect(page.locator("main")).to_contain_text(f"{LABEL} is not answering right now")
        page.screenshot(path=str(ARTIFACTS / "external-unavailable.png"), full_page=True)

        sign_in(page, live.url)
        expect(page.get_by_role("heading", name="Welcome alice")).to_be_visible()


def test_a_provider_gone_before_the_code_exchange_gives_a_503_page_and_no_session(
    tmp_path: Path, redis_url: str, redis_prefix: str, browser: Browser
) -> None:
    # A provider of this test's own, which exits once it has sent the code.
    with oidc_provider(tmp_path, exit_after_code=True) as short_lived:
        short_lived.add_account("grace", email="grace@example.org", email_verified=True)
        port = free_port()
        variables = corp(short_lived, port)
        with bastion_with(
            tmp_path, redis_url, redis_prefix, {"corp": variables}, port=port
        ) as live:
            page = new_page(browser)
            page.goto(f"{live.url}/login")
            provider_button(page)
            with page.expect_response(re.compile("/login/oauth/corp/callback")) as answer:
                through_provider_pages(page, short_lived, "grace")
            assert answer.value.status == 503
            expect(page.locator("main")).to_contain_text(f"{LABEL} is not answering right now")
            page.goto(f"{live.url}/dashboard")
            assert page.url.startswith(f"{live.url}/login")
            assert user_names(live) == ["alice"]


def test_alice_connects_the_provider_signs_in_with_it_and_disconnects_it(
    tmp_path: Path, redis_url: str, redis_prefix: str, browser: Browser, provider: OIDCProvider
) -> None:
    provider.add_account("alice-elsewhere", email="alice@elsewhere.example", email_verified=True)
    port = free_port()
    variables = corp(provider, port)
    with bastion_with(
        tmp_path, redis_url, redis_prefix, {"corp": variables}, port=port, registration="closed"
    ) as live:
        page = new_page(browser)
        sign_in(page, live.url)
        page.goto(f"{live.url}/account/connections")
        page.get_by_role("button", name=re.compile(f"Connect {LABEL}")).click()
        through_provider_pages(page, provider, "alice-elsewhere")
        arrive(page, f"{live.url}/account/connections?done=linked")
        expect(page.get_by_role("status")).to_contain_text("connected")
        page.screenshot(path=str(ARTIFACTS / "external-linked.png"), full_page=True)

        # In another browser, the provider alone signs alice in.
        other = new_page(browser)
        other.goto(f"{live.url}/login")
        provider_button(other)
        through_provider_pages(other, provider, "alice-elsewhere")
        arrive(other, f"{live.url}/dashboard")
        expect(other.get_by_role("heading", name="Welcome alice")).to_be_visible()

        page.get_by_role("button", name=re.compile("Disconnect")).click()
        arrive(page, f"{live.url}/account/connections?done=unlinked")
        expect(page.get_by_role("button", name=re.compile("Disconnect"))).to_have_count(0)

        # Now the same provider account finds no one (and registration is closed).
        third = new_page(browser)
        third.goto(f"{live.url}/login")
        provider_button(third)
        with third.expect_response(re.compile("/login/oauth/corp/callback")) as answer:
            through_provider_pages(third, provider, "alice-elsewhere")
        assert answer.value.status == 403, answer.value.text()
        expect(third.get_by_role("alert").filter(has_text=LABEL)).to_contain_text("No account here")
        third.goto(f"{live.url}/dashboard")
        assert third.url.startswith(f"{live.url}/login")


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    with github_standin("Iv1.bastion-test", "github test secret") as standin:
        standin.add_user(
            "octocat",
            name="The Octocat",
            emails=[("octocat@example.org", True, True), ("old@example.org", False, False)],
        )
        yield standin


def test_github_sign_in_makes_an_account_from_the_user_and_its_emails(
    tmp_path: Path, redis_url: str, redis_prefix: str, browser: Browser, github: GitHubStandIn
) -> None:
    variables = {
        "KIND": "github",
        "CLIENT_ID": github.client_id,
        "CLIENT_SECRET": github.client_secret,
        "LABEL": "GitHub",
        "GITHUB_URL": github.url,
        "GITHUB_API_URL": github.url,
    }
    with bastion_with(tmp_path, redis_url, redis_prefix, {"github": variables}) as live:
        page = new_page(browser)
        page.goto(f"{live.url}/login")
        provider_button(page, "GitHub")
        arrive(page, f"{live.url}/dashboard")
        expect(page.get_by_role("heading", name="Welcome octocat")).to_be_visible()
        expect(page.get_by_text("octocat@example.org")).to_be_visible()
        assert "POST /login/oauth/access_token" in github.requests
        assert "GET /user/emails" in github.requests
        assert sorted(user_names(live)) == ["alice", "octocat"]
