"""Sign-in with an external OpenID Connect provider, over HTTP, on every session store and
both databases: the stand-in issuer (tests/oidc_standin.py) serves discovery, keys and the
token endpoint on a loopback port and signs in whoever the test chose; the browser's side
(the app) is driven through ASGI, the provider's through real HTTP."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bastion.federation.flow import ExternalProfile
from tests.e2e.conftest import (
    ORIGIN,
    MakeSettings,
    Site,
    SiteFactory,
    assert_refused,
    csrf_from,
    login,
)
from tests.e2e.test_reauth import age_sign_ins
from tests.e2e.test_two_step import enrol_totp, set_cookie, verify
from tests.oidc_standin import CLIENT_ID, CLIENT_SECRET, Person, StandInIssuer, standin_issuer

LABEL = "Corp ID"
DEAD_ISSUER = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture
def issuer() -> Iterator[StandInIssuer]:
    with standin_issuer() as running:
        yield running


def configure(monkeypatch: pytest.MonkeyPatch, name: str, issuer: str, **extra: str) -> None:
    prefix = f"BASTION_OAUTH_{name.upper()}_"
    monkeypatch.setenv(prefix + "ISSUER", issuer)
    monkeypatch.setenv(prefix + "CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv(prefix + "CLIENT_SECRET", CLIENT_SECRET)
    for key, value in extra.items():
        monkeypatch.setenv(prefix + key.upper(), value)


@pytest.fixture
def corp(monkeypatch: pytest.MonkeyPatch, issuer: StandInIssuer) -> StandInIssuer:
    configure(monkeypatch, "corp", issuer.issuer, label=LABEL)
    configure(monkeypatch, "down", DEAD_ISSUER, label="Down Inc")
    return issuer


@pytest.fixture
async def site(site_factory: SiteFactory, make_settings: MakeSettings, corp: StandInIssuer) -> Site:
    result: Site = await site_factory(
        make_settings(oauth_providers="corp,down", registration="open", reauth_window=60)
    )
    return result


@pytest.fixture
async def client(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with site.client() as http:
        yield http


async def to_provider(client: httpx.AsyncClient, start: httpx.Response | str) -> str:
    """The browser follows the app's redirect (or the URL its page goes on to) to the
    provider, which sends it back: the callback's path and query on the app."""
    if isinstance(start, httpx.Response):
        assert start.status_code == 302, start.text
        start = start.headers["location"]
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(start)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}" == "http://testserver"
    return f"{back.path}?{back.query}"


async def sign_in_with(
    client: httpx.AsyncClient, name: str = "corp", next_path: str | None = None
) -> httpx.Response:
    query = {"next": next_path} if next_path is not None else {}
    start = await client.get(f"/login/oauth/{name}", params=query)
    return await client.get(await to_provider(client, start))


async def signed_in_user(site: Site, client: httpx.AsyncClient) -> tuple[int, tuple[str, ...]]:
    """The user id and amr of the session this client holds."""
    me = await client.get("/api/me")
    assert me.status_code == 200, me.text
    body = me.json()
    user = await site.bastion.services.users.get_by_username(body["username"])
    assert user is not None
    return int(user.id), tuple(body["amr"])


async def session_count(site: Site) -> int:
    return len(await site.bastion.services.sessions.list_all())


# -- signing in --------------------------------------------------------------------------


async def test_the_first_sign_in_makes_an_account_and_the_second_finds_it(
    site: Site, client: httpx.AsyncClient
) -> None:
    response = await sign_in_with(client)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/dashboard"
    assert set_cookie(response, "bastion_session")
    user_id, amr = await signed_in_user(site, client)
    assert "fed" in amr
    user = await site.bastion.services.users.get_by_id(user_id)
    assert user is not None
    assert user.email == "jane@example.org"
    assert user.email_verified
    devices = await client.get("/account/sessions")
    assert "with external provider" in devices.text
    events = [e.event for e in await site.bastion.services.users.list_audit(0, 20, user_id)]
    assert "federation.account_created" in events
    assert "login.success" in events

    await client.post(
        "/logout",
        data={"csrf_token": csrf_from((await client.get("/dashboard")).text)},
        headers=ORIGIN,
    )
    again = await sign_in_with(client)
    assert again.status_code == 303
    assert (await signed_in_user(site, client))[0] == user_id
    assert len(await site.bastion.services.users.list_users(None, 0, 100)) == 1


async def test_the_login_and_registration_pages_offer_each_provider(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/login", params={"next": "/account/sessions"})
    assert 'href="/login/oauth/corp?next=/account/sessions"' in page.text
    assert LABEL in page.text
    assert "Down Inc" in page.text
    assert 'href="/login/oauth/corp"' in (await client.get("/register")).text


async def test_next_survives_the_round_trip_only_when_it_stays_on_this_site(
    client: httpx.AsyncClient,
) -> None:
    kept = await sign_in_with(client, next_path="/account/sessions")
    assert kept.headers["location"] == "/account/sessions"
    dropped = await sign_in_with(client, next_path="//evil.example/x")
    assert dropped.headers["location"] == "/dashboard"


async def test_an_unknown_provider_is_not_found(client: httpx.AsyncClient) -> None:
    assert (await client.get("/login/oauth/nobody")).status_code == 404
    assert (await client.get("/login/oauth/nobody/callback?state=x&code=y")).status_code == 404


async def test_with_registration_closed_an_unknown_identity_is_refused(
    site_factory: SiteFactory, make_settings: MakeSettings, corp: StandInIssuer
) -> None:
    site = await site_factory(make_settings(oauth_providers="corp", registration="closed"))
    async with site.client() as client:
        response = await sign_in_with(client)
    assert response.status_code == 403
    assert "new accounts cannot be made" in response.text
    assert set_cookie(response, "bastion_session") is None
    assert await site.bastion.services.users.list_users(None, 0, 100) == []


# -- the callback's checks ---------------------------------------------------------------


async def test_a_missing_wrong_or_replayed_state_is_refused_without_a_session(
    site: Site, client: httpx.AsyncClient
) -> None:
    start = await client.get("/login/oauth/corp")
    callback = await to_provider(client, start)
    query = parse_qs(urlsplit(callback).query)
    code = query["code"][0]
    for bad in (
        f"/login/oauth/corp/callback?code={code}",
        f"/login/oauth/corp/callback?code={code}&state=not-the-state",
    ):
        refused = await client.get(bad)
        assert refused.status_code == 400, refused.text
        assert LABEL in refused.text
        assert code not in refused.text
        assert set_cookie(refused, "bastion_session") is None
    assert (await client.get(callback)).status_code == 303
    replayed = await client.get(callback)
    assert replayed.status_code == 400
    assert set_cookie(replayed, "bastion_session") is None
    assert await session_count(site) == 1


async def test_another_browser_cannot_finish_a_sign_in_it_did_not_start(
    site: Site, client: httpx.AsyncClient
) -> None:
    callback = await to_provider(client, await client.get("/login/oauth/corp"))
    async with site.client() as other:
        await other.get("/login")  # a pre-session of its own
        refused = await other.get(callback)
    assert refused.status_code == 400
    assert await session_count(site) == 0


async def test_an_error_from_the_provider_is_a_clear_page(
    site: Site, client: httpx.AsyncClient, corp: StandInIssuer
) -> None:
    corp.deny = "access_denied"
    response = await sign_in_with(client)
    assert response.status_code == 400
    assert f"{LABEL} did not sign you in" in response.text
    assert await session_count(site) == 0
    corp.deny = "Call <b>+1 555 0100</b> to unlock your account"
    odd = await sign_in_with(client)
    assert odd.status_code == 400
    assert "555" not in odd.text  # only a word like access_denied is repeated


async def test_a_provider_that_is_down_gets_a_503_page_while_passwords_still_work(
    site: Site, client: httpx.AsyncClient, corp: StandInIssuer
) -> None:
    down = await client.get("/login/oauth/down")
    assert down.status_code == 503
    assert "Down Inc" in down.text
    corp.fail_token = True
    half_way = await sign_in_with(client)
    assert half_way.status_code == 503
    assert LABEL in half_way.text
    await site.create_user("bob")
    assert (await login(client, "bob")).status_code == 303


# -- accounts that already exist ---------------------------------------------------------


async def test_an_unverified_address_never_takes_over_the_account_that_has_it(
    site_factory: SiteFactory,
    make_settings: MakeSettings,
    corp: StandInIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BASTION_OAUTH_CORP_TRUST_EMAIL", "true")
    site = await site_factory(make_settings(oauth_providers="corp", registration="open"))
    await site.create_user("jane", email="jane@example.org")
    corp.person = Person(email_verified=False)
    async with site.client() as client:
        response = await sign_in_with(client)
    assert response.status_code == 403
    assert "jane@example.org" not in response.text  # the same page as for no account
    assert await session_count(site) == 0
    jane = await site.bastion.services.users.get_by_username("jane")
    assert jane is not None
    assert await site.bastion.services.federation.identities_of(jane.id) == []


async def test_a_verified_address_links_only_when_the_provider_is_trusted_with_it(
    site_factory: SiteFactory,
    make_settings: MakeSettings,
    corp: StandInIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(oauth_providers="corp", registration="open")
    untrusted = await site_factory(settings)
    jane_id = await untrusted.create_user("jane", email="jane@example.org")
    # An address the local account never verified could be a squatter's: it links nothing.
    await untrusted.bastion.services.users.mark_email_verified(jane_id, "jane@example.org")
    async with untrusted.client() as client:
        asked = await sign_in_with(client)
    assert asked.status_code == 403
    assert "An account with the address jane@example.org already exists" in asked.text
    assert await session_count(untrusted) == 0

    monkeypatch.setenv("BASTION_OAUTH_CORP_TRUST_EMAIL", "true")
    trusted = await site_factory(settings)
    async with trusted.client() as client:
        linked = await sign_in_with(client)
        assert linked.status_code == 303
        assert (await signed_in_user(trusted, client))[0] == jane_id


async def test_a_disabled_user_cannot_sign_in_through_the_provider(
    site: Site, client: httpx.AsyncClient
) -> None:
    await sign_in_with(client)
    user_id, _ = await signed_in_user(site, client)
    await site.bastion.services.users.set_active(user_id, False)
    async with site.client() as fresh:
        refused = await sign_in_with(fresh)
    assert refused.status_code == 403
    assert "cannot sign in" in refused.text
    assert set_cookie(refused, "bastion_session") is None


# -- second factors ----------------------------------------------------------------------


async def test_a_user_with_totp_gets_the_second_step_after_the_provider(
    site: Site, client: httpx.AsyncClient
) -> None:
    await sign_in_with(client)
    user_id, _ = await signed_in_user(site, client)
    phone, _ = await enrol_totp(site, user_id, "jane")
    async with site.client() as fresh:
        first = await sign_in_with(fresh, next_path="/account/sessions")
        assert first.status_code == 303
        assert first.headers["location"] == "/login/verify"
        assert set_cookie(first, "bastion_session") is None
        done = await verify(fresh, code=phone.code())
        assert done.status_code == 303
        assert done.headers["location"] == "/account/sessions"
        _, amr = await signed_in_user(site, fresh)
    assert {"fed", "otp", "mfa"} <= set(amr)


async def test_a_user_whom_the_policy_requires_a_second_factor_must_enrol_one_first(
    site_factory: SiteFactory, make_settings: MakeSettings, corp: StandInIssuer
) -> None:
    site = await site_factory(
        make_settings(oauth_providers="corp", registration="open", mfa="required")
    )
    async with site.client() as client:
        response = await sign_in_with(client)
        assert response.headers["location"] == "/account/security"
        assert (await client.get("/dashboard")).headers["location"] == "/account/security"


async def test_an_address_that_must_be_verified_first_holds_back_the_session(
    site_factory: SiteFactory, make_settings: MakeSettings, corp: StandInIssuer
) -> None:
    site = await site_factory(make_settings(oauth_providers="corp", email_verification="required"))
    bob_id = await site.create_user("bob", email="bob@example.com")
    services = site.bastion.services
    # bob connected Corp ID before his address had to be verified.
    profile = ExternalProfile(provider="corp", issuer=corp.issuer, subject=Person().sub)
    await services.federation.link(bob_id, profile)
    async with site.client() as client:
        response = await sign_in_with(client)
    assert response.status_code == 403
    assert "not verified yet" in response.text
    assert 'action="/email/verify/resend"' in response.text
    assert set_cookie(response, "bastion_session") is None


async def test_a_trusted_providers_multi_factor_sign_in_replaces_the_second_step(
    site_factory: SiteFactory,
    make_settings: MakeSettings,
    corp: StandInIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(oauth_providers="corp", registration="open")
    site = await site_factory(settings)
    async with site.client() as client:
        await sign_in_with(client)
        user_id, _ = await signed_in_user(site, client)
    await enrol_totp(site, user_id, "jane")
    corp.person = Person(amr=["pwd", "mfa"])
    async with site.client() as client:  # the provider says mfa, but is not trusted
        assert (await sign_in_with(client)).headers["location"] == "/login/verify"
    monkeypatch.setenv("BASTION_OAUTH_CORP_TRUST_MFA", "true")
    trusting = await site_factory(settings)
    async with trusting.client() as client:
        response = await sign_in_with(client)
        assert response.headers["location"] == "/dashboard"
        assert {"fed", "mfa"} <= set((await signed_in_user(trusting, client))[1])
    corp.person = Person(amr=["pwd"])
    async with trusting.client() as client:  # trusted, but one factor only
        assert (await sign_in_with(client)).headers["location"] == "/login/verify"


# -- connections -------------------------------------------------------------------------


async def connect(client: httpx.AsyncClient, name: str = "corp") -> httpx.Response:
    page = await client.get("/account/connections")
    start = await client.post(
        f"/account/connections/{name}/link",
        data={"csrf_token": csrf_from(page.text)},
        headers=ORIGIN,
    )
    if start.status_code != 200 or 'id="continue"' not in start.text:
        return start
    # A page that goes on to the provider by itself (a redirect of a form's POST to
    # another origin would break CSP form-action 'self' in a browser).
    found = re.search(r'<a class="button" id="continue" href="([^"]+)"', start.text)
    assert found is not None, start.text
    return await client.get(await to_provider(client, html.unescape(found.group(1))))


async def test_a_password_user_connects_and_disconnects_a_provider(
    site: Site, client: httpx.AsyncClient
) -> None:
    bob_id = await site.create_user("bob", email="bob@example.com")
    await login(client, "bob")
    page = await client.get("/account/connections")
    assert page.status_code == 200
    assert f"Connect {LABEL}" in page.text
    linked = await connect(client)
    assert linked.status_code == 303, linked.text
    assert linked.headers["location"] == "/account/connections?done=linked"
    listed = await client.get(linked.headers["location"])
    assert "jane@example.org" in listed.text
    assert "was connected" in listed.text
    async with site.client() as other:  # the provider now signs bob in
        await sign_in_with(other)
        assert (await signed_in_user(site, other))[0] == bob_id

    unlinked = await client.post(
        "/account/connections/corp/unlink",
        data={"csrf_token": csrf_from(listed.text)},
        headers=ORIGIN,
    )
    assert unlinked.headers["location"] == "/account/connections?done=unlinked"
    assert await site.bastion.services.federation.identities_of(bob_id) == []


async def test_connecting_and_disconnecting_need_a_recent_sign_in(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("bob")
    await login(client, "bob")
    await age_sign_ins(site, "bob")
    page = await client.get("/account/connections")
    headers = {**ORIGIN, "Referer": "http://testserver/account/connections"}
    for action in ("link", "unlink"):
        response = await client.post(
            f"/account/connections/corp/{action}",
            data={"csrf_token": csrf_from(page.text)},
            headers=headers,
        )
        assert response.status_code == 303
        assert response.headers["location"].startswith("/reauth?next=/account/connections")


async def test_an_identity_of_another_user_is_not_connected_again(
    site: Site, client: httpx.AsyncClient
) -> None:
    await sign_in_with(client)  # jane's account now owns the identity
    await site.create_user("bob")
    async with site.client() as bob:
        await login(bob, "bob")
        refused = await connect(bob)
        assert refused.status_code == 400
        assert "already connected to another account" in refused.text


async def test_the_last_way_to_sign_in_is_not_disconnected(
    site: Site, client: httpx.AsyncClient
) -> None:
    await sign_in_with(client)
    user_id, _ = await signed_in_user(site, client)
    page = await client.get("/account/connections")
    refused = await client.post(
        "/account/connections/corp/unlink",
        data={"csrf_token": csrf_from(page.text)},
        headers=ORIGIN,
    )
    assert refused.status_code == 400
    assert "only way left to sign in" in refused.text
    assert len(await site.bastion.services.federation.identities_of(user_id)) == 1


async def test_the_connection_forms_need_the_csrf_token(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("bob")
    await login(client, "bob")
    for action in ("link", "unlink"):
        assert_refused(
            await client.post(f"/account/connections/corp/{action}", data={}, headers=ORIGIN)
        )
