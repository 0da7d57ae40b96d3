"""Address verification (optional and required), address change and the admin's reset link,
end to end through a real SMTP server (aiosmtpd), on every session store and both
databases."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.conftest import (
    ORIGIN,
    PASSWORD,
    MakeSettings,
    SiteFactory,
    csrf_from,
    csrf_token,
    login,
)
from tests.e2e.test_recovery import ALICE, api_tokens, ask_for_reset, link_in, settle
from tests.mail_server import MailServer

BOB_PASSWORD = "a long passphrase of his own 4"


async def register(client: httpx.AsyncClient, name: str, email: str) -> httpx.Response:
    page = await client.get("/register")
    form = {
        "username": name,
        "email": email,
        "password": BOB_PASSWORD,
        "password_confirm": BOB_PASSWORD,
        "csrf_token": csrf_from(page.text),
    }
    return await client.post("/register", data=form, headers=ORIGIN)


async def change_address(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    form = {
        "email": email,
        "current_password": password,
        "csrf_token": await csrf_token(client, "/account/email"),
    }
    return await client.post("/account/email", data=form, headers=ORIGIN)


async def test_optional_verification_signs_in_and_shows_the_address_unverified(
    site_factory: SiteFactory, make_settings: MakeSettings, mail_server: MailServer
) -> None:
    site = await site_factory(make_settings(**mail_server.settings(), registration="open"))
    async with site.client() as client:
        registered = await register(client, "bob", "bob@example.com")
        assert registered.headers["location"] == "/dashboard"
        dashboard = await client.get("/dashboard")
        assert "unverified" in dashboard.text
        assert (await client.get("/api/me")).json()["email_verified"] is False
        await settle(site)
        [mail] = await mail_server.receive(1)
        assert mail["To"] == "bob@example.com"
        link = link_in(mail)
        assert link.startswith("/email/verify/")

        followed = await client.get(link)
        assert followed.status_code == 200
        assert "Your address is verified" in followed.text
        assert followed.headers["referrer-policy"] == "no-referrer"
        # This browser's session learnt it at once.
        assert (await client.get("/api/me")).json()["email_verified"] is True
        assert "unverified" not in (await client.get("/dashboard")).text
        assert (await client.get(link)).status_code == 400
    user = await site.bastion.services.users.get_by_username("bob")
    assert user is not None
    assert user.email_verified


async def test_required_verification_refuses_a_session_only_after_the_right_password(
    site_factory: SiteFactory, make_settings: MakeSettings, mail_server: MailServer
) -> None:
    settings = make_settings(**mail_server.settings(), email_verification="required")
    site = await site_factory(settings)
    await site.create_user("alice", email=ALICE)
    async with site.client() as client:
        wrong = await login(client, "alice", "not her password")
        assert wrong.status_code == 400
        assert "verified" not in wrong.text
        right = await login(client, "alice")
        assert right.status_code == 403
        assert "not verified yet" in right.text
        assert not any(
            c.startswith("bastion_session=") for c in right.headers.get_list("set-cookie")
        )
        assert (await client.get("/dashboard")).status_code == 303

        wrong_api = await api_tokens(client, "alice", "not her password")
        assert wrong_api.json()["error"] == "invalid_grant"
        right_api = await api_tokens(client, "alice")
        assert right_api.status_code == 400
        assert right_api.json()["error"] == "email_not_verified"

        # The sign-in page offers a new link to the browser that typed the password.
        ticket = csrf_from(right.text)
        resend_form = {
            "ticket": right.text.split('name="ticket" value="', 1)[1].split('"', 1)[0],
            "csrf_token": ticket,
        }
        resent = await client.post("/email/verify/resend", data=resend_form, headers=ORIGIN)
        assert resent.status_code == 200
        assert "Check your inbox" in resent.text
        forged = {**resend_form, "ticket": resend_form["ticket"][:-2] + "AA"}
        assert (
            await client.post("/email/verify/resend", data=forged, headers=ORIGIN)
        ).status_code == 400

        await settle(site)
        mails = await mail_server.receive(2)  # the token endpoint's and the page's
        assert {m["To"] for m in mails} == {ALICE}
        assert (await client.get(link_in(mails[-1]))).status_code == 200
        assert (await login(client, "alice")).headers["location"] == "/dashboard"
        assert (await api_tokens(client, "alice")).status_code == 200
    events = [e.event for e in await site.bastion.services.users.list_audit(0, 50)]
    assert "login.unverified" in events
    assert "email.verified" in events


async def test_required_verification_registers_without_a_session(
    site_factory: SiteFactory, make_settings: MakeSettings, mail_server: MailServer
) -> None:
    settings = make_settings(
        **mail_server.settings(), registration="open", email_verification="required"
    )
    site = await site_factory(settings)
    async with site.client() as client:
        no_address = await register(client, "bob", "")
        assert no_address.status_code == 400
        assert "e-mail address is required" in no_address.text
        registered = await register(client, "bob", "bob@example.com")
        assert registered.status_code == 200
        assert "Check your inbox" in registered.text
        assert (await client.get("/dashboard")).status_code == 303
        await settle(site)
        [mail] = await mail_server.receive(1)
        assert (await client.get(link_in(mail))).status_code == 200
        page = await client.get("/login")
        form = {"username": "bob", "password": BOB_PASSWORD, "csrf_token": csrf_from(page.text)}
        assert (await client.post("/login", data=form, headers=ORIGIN)).status_code == 303


async def test_the_dashboard_sends_a_new_link_within_the_accounts_limit(
    site_factory: SiteFactory, make_settings: MakeSettings, mail_server: MailServer
) -> None:
    site = await site_factory(make_settings(**mail_server.settings(), email_link_limit="2/hour"))
    await site.create_user("alice", email=ALICE)
    async with site.client() as client:
        await login(client, "alice")
        for _ in range(2):
            form = {"csrf_token": await csrf_token(client)}
            sent = await client.post("/account/email/verify", data=form, headers=ORIGIN)
            assert sent.headers["location"] == "/dashboard?done=verify-sent"
        form = {"csrf_token": await csrf_token(client)}
        limited = await client.post("/account/email/verify", data=form, headers=ORIGIN)
        assert limited.status_code == 429
        assert "retry-after" in limited.headers
        await settle(site)
        first, second = await mail_server.receive(2)
        # The newer link does not replace the older: both verify, the first one used wins.
        assert (await client.get(link_in(second))).status_code == 200
        assert (await client.get(link_in(first))).status_code == 400
    assert len(mail_server.messages) == 2


async def test_an_address_change_takes_effect_when_the_new_address_confirms(
    site_factory: SiteFactory, make_settings: MakeSettings, mail_server: MailServer
) -> None:
    site = await site_factory(make_settings(**mail_server.settings()))
    await site.create_user("alice", email=ALICE)
    async with site.client() as client, site.client() as other:
        await login(client, "alice")
        await ask_for_reset(other, ALICE)  # a reset link for the old address
        wrong = await change_address(client, "new-alice@example.com", "not her password")
        assert wrong.status_code == 400
        assert "current password is not correct" in wrong.text
        same = await change_address(client, ALICE.upper())
        assert same.status_code == 400
        asked = await change_address(client, "New-Alice@example.com")
        assert asked.status_code == 200
        assert "We sent a confirmation link to New-Alice@example.com" in asked.text
        assert (await client.get("/api/me")).json()["email"] == ALICE  # not yet

        await settle(site)
        reset_mail, change_mail = await mail_server.receive(2)
        assert change_mail["To"] == "New-Alice@example.com"
        followed = await client.get(link_in(change_mail))
        assert followed.status_code == 200
        assert "Your address was changed" in followed.text
        me = (await client.get("/api/me")).json()
        assert (me["email"], me["email_verified"]) == ("New-Alice@example.com", True)

        await settle(site)
        [_, _, notice] = await mail_server.receive(3)
        assert notice["To"] == ALICE
        assert "New-Alice@example.com" in notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        # Links made for the account as it was die with the change.
        assert (await other.get(link_in(reset_mail))).status_code == 400
        assert (await client.get(link_in(change_mail))).status_code == 400


async def test_an_address_taken_meanwhile_is_refused_clearly(
    site_factory: SiteFactory, make_settings: MakeSettings, mail_server: MailServer
) -> None:
    site = await site_factory(make_settings(**mail_server.settings()))
    await site.create_user("alice", email=ALICE)
    async with site.client() as client:
        await login(client, "alice")
        assert (await change_address(client, "shared@example.com")).status_code == 200
        await settle(site)
        [mail] = await mail_server.receive(1)
        await site.create_user("bob", email="Shared@Example.com")
        refused = await client.get(link_in(mail))
        assert refused.status_code == 400
        assert "belongs to another account" in refused.text
    alice = await site.bastion.services.users.get_by_username("alice")
    assert alice is not None
    assert alice.email == ALICE


async def test_two_accounts_confirming_one_address_at_once_end_with_one_owner(
    site_factory: SiteFactory, make_settings: MakeSettings, mail_server: MailServer
) -> None:
    site = await site_factory(make_settings(**mail_server.settings()))
    await site.create_user("alice", email=ALICE)
    await site.create_user("bob", email="bob@example.com")
    async with site.client() as alice, site.client() as bob:
        await login(alice, "alice")
        await login(bob, "bob")
        assert (await change_address(alice, "wanted@example.com")).status_code == 200
        assert (await change_address(bob, "wanted@example.com")).status_code == 200
        await settle(site)
        first, second = await mail_server.receive(2)
        answers = await asyncio.gather(alice.get(link_in(first)), bob.get(link_in(second)))
    assert sorted(a.status_code for a in answers) == [200, 400]
    users = await site.bastion.services.users.list_users(None, 0, 10)
    assert sorted(u.email or "" for u in users).count("wanted@example.com") == 1


@pytest.mark.parametrize("with_address", [True, False])
async def test_an_admin_sends_a_reset_link(
    site_factory: SiteFactory,
    make_settings: MakeSettings,
    mail_server: MailServer,
    with_address: bool,
) -> None:
    site = await site_factory(make_settings(**mail_server.settings()))
    await site.create_user("root", roles=("admin",))
    alice = await site.create_user("alice", email=ALICE if with_address else None)
    async with site.client() as admin:
        await login(admin, "root")
        page = await admin.get(f"/admin/users/{alice}/password")
        form = {"csrf_token": csrf_from(page.text)}
        sent = await admin.post(f"/admin/users/{alice}/reset-link", data=form, headers=ORIGIN)
        if not with_address:
            assert "no e-mail address" in page.text
            assert sent.status_code == 400
            assert "no e-mail address" in sent.text
            return
        assert sent.headers["location"] == "/admin/users?done=reset-link"
        await settle(site)
        [mail] = await mail_server.receive(1)
        assert mail["To"] == ALICE
        assert link_in(mail).startswith("/password/reset/")
    events = await site.bastion.services.users.list_audit(0, 10)
    sent_event = next(e for e in events if e.event == "password.reset_link_sent")
    root = await site.bastion.services.users.get_by_username("root")
    assert root is not None
    assert (sent_event.user_id, sent_event.actor_id) == (alice, root.id)
