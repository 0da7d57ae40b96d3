"""Password reset by mail, end to end: the reference app over ASGI sends through a real SMTP
server (aiosmtpd, tests/mail_server.py), on every session store and both databases."""

from __future__ import annotations

import asyncio
import logging
import re
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from bastion.clock import FakeClock
from bastion.mail import Mailer, MailTemplates, RetryPolicy, backend_from_settings
from bastion.recovery import LinkTokens
from bastion.settings import Settings
from tests.e2e.conftest import ORIGIN, PASSWORD, MakeSettings, Site, SiteFactory, csrf_from, login
from tests.mail_server import WAIT, MailServer

NEW_PASSWORD = "a fresh passphrase, number 7"
ALICE = "alice@example.com"
LINK = re.compile(
    r"http://testserver(/(?:password/reset|email/verify)/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)"
)
# What differs between two answers of one page: the masked CSRF token and the CSP nonce.
PER_RESPONSE = re.compile(r'(name="csrf_token" value="|name="csrf-token" content="|nonce=")[^"]+')


def link_in(message: EmailMessage) -> str:
    """The path of the one link in a mail, the same in its text and HTML parts."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    links = set(LINK.findall(text.get_content())) | set(LINK.findall(html.get_content()))
    assert len(links) == 1, links
    return str(links.pop())


async def settle(site: Site) -> None:
    """Let the work started after responses finish and the mail queue empty."""
    services = site.bastion.services
    await services.recovery.settle()
    assert await services.mailer.wait_idle(30)


async def ask_for_reset(client: httpx.AsyncClient, email: str) -> httpx.Response:
    page = await client.get("/password/forgot")
    form = {"email": email, "csrf_token": csrf_from(page.text)}
    return await client.post("/password/forgot", data=form, headers=ORIGIN)


async def set_password(
    client: httpx.AsyncClient, path: str, password: str = NEW_PASSWORD
) -> httpx.Response:
    page = await client.get(path)
    form = {
        "new_password": password,
        "new_password_confirm": password,
        "csrf_token": csrf_from(page.text),
    }
    return await client.post(path, data=form, headers=ORIGIN)


async def api_tokens(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> Any:
    form = {"grant_type": "password", "username": username, "password": password}
    return await client.post("/api/token", data=form)


@pytest.fixture
async def mail_site(
    site_factory: SiteFactory, make_settings: MakeSettings, mail_server: MailServer
) -> Site:
    site: Site = await site_factory(make_settings(**mail_server.settings()))
    await site.create_user("alice", email=ALICE)
    return site


async def test_reset_by_mail_ends_every_session_and_refresh_token(
    mail_site: Site, mail_server: MailServer
) -> None:
    site = mail_site
    async with site.client() as signed_in, site.client() as api, site.client() as owner:
        assert (await login(signed_in, "alice")).status_code == 303
        refresh = (await api_tokens(api, "alice")).json()["refresh_token"]

        asked = await ask_for_reset(owner, ALICE)
        assert asked.status_code == 200
        await settle(site)
        [mail] = await mail_server.receive(1)
        assert mail["To"] == ALICE
        assert "Bastion" in mail["Subject"]
        link = link_in(mail)
        assert link.startswith("/password/reset/")

        # The followed link keeps its token server-side and shows the form elsewhere.
        followed = await owner.get(link)
        assert followed.status_code == 303
        assert followed.headers["location"] == "/password/reset"
        assert followed.headers["referrer-policy"] == "no-referrer"
        form = await owner.get("/password/reset")
        assert form.status_code == 200
        assert link.rsplit("/", 1)[1] not in form.text
        done = await set_password(owner, "/password/reset")
        assert done.status_code == 303
        assert done.headers["location"] == "/login?done=password-reset"
        assert (
            "every session of your account ended"
            in (await owner.get("/login?done=password-reset")).text
        )

        # Every session and refresh token of alice ended; she signs in with the new password.
        assert (await signed_in.get("/dashboard")).headers["location"].startswith("/login")
        refreshed = await api.post(
            "/api/token", data={"grant_type": "refresh_token", "refresh_token": refresh}
        )
        assert refreshed.json()["error"] == "invalid_grant"
        assert (await login(owner, "alice", PASSWORD)).status_code == 400
        assert (await login(owner, "alice", NEW_PASSWORD)).status_code == 303

        # The link works once.
        again = await owner.get(link)
        assert again.status_code == 400
        assert "cannot be used" in again.text

    # Audited, without the token.
    events = await site.bastion.services.users.list_audit(0, 20)
    changed = next(e for e in events if e.event == "password.changed")
    assert changed.detail == {"via": "reset link", "sessions_ended": 2}
    token = link.rsplit("/", 1)[1]
    assert all(token not in repr(event) for event in events)


async def test_a_reset_link_posted_to_directly_works_once(
    mail_site: Site, mail_server: MailServer
) -> None:
    async with mail_site.client() as client:
        await ask_for_reset(client, ALICE)
        await settle(mail_site)
        link = link_in((await mail_server.receive(1))[0])
        page = await client.get("/login")
        form = {
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
            "csrf_token": csrf_from(page.text),
        }
        used = await client.post(link, data=form, headers=ORIGIN)
        assert used.status_code == 303
        replay = await client.post(link, data=form, headers=ORIGIN)
        assert replay.status_code == 400
        assert "cannot be used" in replay.text


async def test_a_reset_post_refused_by_csrf_logs_no_token(
    mail_site: Site, mail_server: MailServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The CSRF refusal's security log names the path; a link's token is blanked in it."""
    async with mail_site.client() as client:
        await ask_for_reset(client, ALICE)
        await settle(mail_site)
        link = link_in((await mail_server.receive(1))[0])
        token = link.rsplit("/", 1)[1]
        with caplog.at_level(logging.INFO, logger="bastion.security"):
            refused = await client.post(link, data={"new_password": NEW_PASSWORD})
        assert refused.status_code == 403
    logged = [(r.getMessage(), repr(r.__dict__)) for r in caplog.records]
    assert any("csrf" in message for message, _ in logged)
    assert not any(token in detail for _, detail in logged)


async def test_an_expired_reset_link_is_refused(mail_site: Site) -> None:
    services = mail_site.bastion.services
    user = await services.users.get_by_username("alice")
    assert user is not None
    ttl = services.recovery.tokens.ttl
    settings = mail_site.bastion.settings
    # Made by a process whose clock says the link is one second past its lifetime.
    clock = FakeClock(mail_site.bastion.services.clock() - ttl - 1)
    old = LinkTokens(
        settings.secret_bytes(),
        settings.fallback_secret_bytes(),
        services.session_store,
        ttl=ttl,
        clock=clock,
    )
    expired = old.make("reset", user)
    # A minute inside the lifetime: still usable however slowly the requests below run (a
    # one-second margin ran out once on a busy CI machine).
    clock.advance(61)
    fresh = old.make("reset", user)
    async with mail_site.client() as client:
        assert (await client.get(f"/password/reset/{expired}")).status_code == 400
        assert (await client.get(f"/password/reset/{fresh}")).status_code == 303


async def test_a_link_made_before_a_password_change_is_refused(
    mail_site: Site, mail_server: MailServer
) -> None:
    async with mail_site.client() as client:
        await ask_for_reset(client, ALICE)
        await settle(mail_site)
        link = link_in((await mail_server.receive(1))[0])
        services = mail_site.bastion.services
        user = await services.users.get_by_username("alice")
        assert user is not None
        await services.accounts.change_password(user.id, "changed by the owner meanwhile 9")
        assert (await client.get(link)).status_code == 400
        api = await client.post(
            "/api/password/reset",
            json={"token": link.rsplit("/", 1)[1], "new_password": NEW_PASSWORD},
        )
        assert api.status_code == 400
        assert api.json()["error"] == "invalid_token"


async def test_a_reset_link_dies_when_the_owner_signs_in(
    mail_site: Site, mail_server: MailServer
) -> None:
    async with mail_site.client() as client:
        await ask_for_reset(client, ALICE)
        await settle(mail_site)
        link = link_in((await mail_server.receive(1))[0])
        assert (await login(client, "alice")).status_code == 303  # remembered it after all
        assert (await client.get(link)).status_code == 400


async def test_a_link_followed_by_one_browser_is_not_held_for_another(
    mail_site: Site, mail_server: MailServer
) -> None:
    async with mail_site.client() as owner, mail_site.client() as stranger:
        await ask_for_reset(owner, ALICE)
        await settle(mail_site)
        link = link_in((await mail_server.receive(1))[0])
        assert (await owner.get(link)).status_code == 303
        assert (await stranger.get("/password/reset")).status_code == 400
        assert (await owner.get("/password/reset")).status_code == 200


async def test_the_reset_form_applies_the_password_policy_and_keeps_the_link(
    mail_site: Site, mail_server: MailServer
) -> None:
    async with mail_site.client() as client:
        await ask_for_reset(client, ALICE)
        await settle(mail_site)
        link = link_in((await mail_server.receive(1))[0])
        await client.get(link)
        weak = await set_password(client, "/password/reset", "password")
        assert weak.status_code == 400
        assert "common" in weak.text
        assert (await set_password(client, "/password/reset")).status_code == 303


def same_page(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, PER_RESPONSE.sub(r"\1", response.text)


async def test_known_and_unknown_addresses_get_the_same_answer(
    mail_site: Site, mail_server: MailServer
) -> None:
    async with mail_site.client() as client:
        known = await ask_for_reset(client, ALICE)
        unknown = await ask_for_reset(client, "nobody@example.com")
        malformed = await ask_for_reset(client, "not an address")
        assert same_page(known) == same_page(unknown) == same_page(malformed)
        assert known.status_code == 200
        assert "If an account uses that address" in known.text
        api_known = await client.post("/api/password/forgot", json={"email": ALICE})
        api_unknown = await client.post("/api/password/forgot", json={"email": "no@example.com"})
        assert (api_known.status_code, api_known.content) == (202, b"")
        assert (api_unknown.status_code, api_unknown.content) == (202, b"")
    await settle(mail_site)
    assert [m["To"] for m in await mail_server.receive(2)] == [ALICE, ALICE]
    assert len(mail_server.messages) == 2


async def test_reset_mails_are_limited_per_address_whoever_asks(
    site_factory: SiteFactory, make_settings: MakeSettings, mail_server: MailServer
) -> None:
    site = await site_factory(make_settings(**mail_server.settings(), email_link_limit="2/hour"))
    await site.create_user("alice", email=ALICE)
    for number in range(4):  # from four client addresses: the victim's inbox is what counts
        async with site.client(client=(f"198.51.100.{number + 1}", 4000)) as client:
            asked = await ask_for_reset(client, ALICE.upper())
            assert asked.status_code == 200
            assert "If an account uses that address" in asked.text
    await settle(site)
    assert len(await mail_server.receive(2)) == 2
    assert len(mail_server.messages) == 2


async def test_reset_requests_are_limited_per_client_address(
    site_factory: SiteFactory, make_settings: MakeSettings, mail_server: MailServer
) -> None:
    settings = make_settings(**mail_server.settings(), password_reset_ip_limit="3/hour")
    site = await site_factory(settings)
    async with site.client() as client:
        for number in range(3):
            assert (await ask_for_reset(client, f"someone{number}@example.com")).status_code == 200
        throttled = await ask_for_reset(client, "someone@example.com")
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) > 0
        api = await client.post("/api/password/forgot", json={"email": "x@example.com"})
        assert api.status_code == 429
        assert "retry-after" in api.headers
    async with site.client(client=("198.51.100.9", 4000)) as other:
        assert (await ask_for_reset(other, "someone@example.com")).status_code == 200


async def test_a_mail_server_that_is_down_loses_no_request_and_tells_nobody(
    mail_site: Site, mail_server: MailServer
) -> None:
    services = mail_site.bastion.services
    # The same mailer with quick retries, so the test need not wait minutes.
    settings: Settings = mail_site.bastion.settings
    quick = Mailer(
        backend_from_settings(settings),
        MailTemplates(site_name=settings.site_name),
        sender=settings.email_from,
        retry=RetryPolicy(attempts=50, first_delay=0.05, factor=1.0),
    )
    await services.mailer.aclose(timeout=0)
    services.mailer = services.recovery.mailer = quick
    mail_server.down()
    async with mail_site.client() as client:
        known = await ask_for_reset(client, ALICE)
        unknown = await ask_for_reset(client, "nobody@example.com")
        assert same_page(known) == same_page(unknown)
        await services.recovery.settle()
        assert quick.stats.queued == 1
        async with asyncio.timeout(WAIT):  # a bound against a hang, not a timing check
            while quick.stats.retried < 2:  # noqa: ASYNC110 - a counter of the sender's task
                await asyncio.sleep(0.01)
        assert "error" not in known.text.lower()
    mail_server.up()
    [mail] = await mail_server.receive(1)
    assert mail["To"] == ALICE
    assert await quick.wait_idle(WAIT)
    assert quick.stats.sent == 1
    assert quick.stats.failed == 0


async def test_the_reset_api_sets_the_password_and_refuses_a_bad_token(
    mail_site: Site, mail_server: MailServer
) -> None:
    async with mail_site.client() as client:
        assert (await client.post("/api/password/forgot", json={"email": ALICE})).status_code == 202
        await settle(mail_site)
        token = link_in((await mail_server.receive(1))[0]).rsplit("/", 1)[1]
        weak = await client.post("/api/password/reset", json={"token": token, "new_password": "x"})
        assert weak.status_code == 400
        assert weak.json()["error"] == "invalid_password"
        done = await client.post(
            "/api/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
        )
        assert done.status_code == 204
        for bad in (token, token + "x", "nonsense", "a.b"):
            refused = await client.post(
                "/api/password/reset", json={"token": bad, "new_password": NEW_PASSWORD}
            )
            assert refused.status_code == 400
            assert refused.json()["error"] == "invalid_token"
        assert (await api_tokens(client, "alice", NEW_PASSWORD)).status_code == 200
