"""Brute-force protection through the ASGI app: back-off, shared budget, address limits,
on sign-in, on the password check of a signed-in user, and on registration.

``Bastion`` starts its services on the system clock, so most tests here swap the limiter
(of the authenticator and of the accounts) for one built by the same
``LoginThrottle.from_settings`` on a memory store that runs on a :class:`FakeClock`: back-off
is then observed without sleeping. ``test_limiter_is_wired_to_the_configured_store`` and the
outage tests use the real wiring.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bastion.clock import FakeClock
from bastion.fastapi.errors import UNAVAILABLE
from bastion.passwords import Passwords
from bastion.ratelimit import AddressLimit, LoginThrottle
from bastion.settings import Settings
from bastion.stores import MemoryStore, RedisStore, create_redis_client
from tests.e2e.conftest import ORIGIN, PASSWORD, Site, csrf_from, csrf_token, login

WRONG = "not the password at all"
NEW_PASSWORD = "a much better passphrase 42"
PROXY = "10.0.0.1"
SiteFactory = Callable[[Settings], Any]
MakeSettings = Callable[..., Settings]


@dataclass
class Throttled:
    site: Site
    clock: FakeClock
    limiter: LoginThrottle


async def start(
    site_factory: SiteFactory, make_settings: MakeSettings, **overrides: Any
) -> Throttled:
    """A site with short settings whose limiter runs on a FakeClock; user alice exists."""
    values: dict[str, Any] = {
        "login_max_failures": 2,
        "login_max_backoff": 4,
        "login_ip_limit": "100/minute",
        **overrides,
    }
    settings = make_settings(**values)
    site: Site = await site_factory(settings)
    clock = FakeClock()
    limiter = LoginThrottle.from_settings(MemoryStore("ratelimit", clock=clock), settings)
    site.bastion.services.authenticator.limiter = limiter
    site.bastion.services.accounts.limiter = limiter
    await site.create_user("alice")
    return Throttled(site, clock, limiter)


@pytest.fixture
async def throttled(site_factory: SiteFactory, make_settings: MakeSettings) -> Throttled:
    return await start(site_factory, make_settings)


async def web(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await login(client, username, password)


async def api(
    client: httpx.AsyncClient, username: str, password: str, **kwargs: Any
) -> httpx.Response:
    form = {"grant_type": "password", "username": username, "password": password}
    return await client.post("/api/token", data=form, **kwargs)


def outcome(response: httpx.Response) -> tuple[int, str | None]:
    return response.status_code, response.headers.get("retry-after")


_VARYING = [
    (re.compile(r'(name="csrf_token" value=")[^"]+'), r"\1*"),
    (re.compile(r'(<meta name="csrf-token" content=")[^"]+'), r"\1*"),
    (re.compile(r'nonce="[^"]+"'), 'nonce="*"'),
    (re.compile(r"'nonce-[^']+'"), "'nonce-*'"),
]


def normalised(text: str) -> str:
    """``text`` without what differs on every response: masked CSRF tokens, CSP nonces."""
    for pattern, replacement in _VARYING:
        text = pattern.sub(replacement, text)
    return text


def comparable(response: httpx.Response) -> tuple[int, dict[str, str], str]:
    headers = {
        name: normalised(value) for name, value in response.headers.items() if name != "date"
    }
    return response.status_code, headers, normalised(response.text)


# -- per-account back-off --------------------------------------------------------------------


async def test_backoff_starts_after_max_failures(throttled: Throttled) -> None:
    async with throttled.site.client() as client:
        assert outcome(await web(client, "alice", WRONG)) == (400, None)
        assert outcome(await web(client, "alice", WRONG)) == (400, None)
        assert outcome(await web(client, "alice", WRONG)) == (429, "1")


async def test_backoff_doubles_and_is_capped_at_max_backoff(throttled: Throttled) -> None:
    waits = []
    async with throttled.site.client() as client:
        for _ in range(2):
            await web(client, "alice", WRONG)
        for _ in range(4):
            status, retry_after = outcome(await web(client, "alice", WRONG))
            assert status == 429
            assert retry_after is not None
            waits.append(int(retry_after))
            throttled.clock.advance(int(retry_after))
            assert outcome(await web(client, "alice", WRONG)) == (400, None)
    assert waits == [1, 2, 4, 4]


async def test_backoff_is_never_a_permanent_lockout(throttled: Throttled) -> None:
    async with throttled.site.client() as client:
        for _ in range(6):  # 2 failures, then 4 more each after waiting out the back-off
            response = await web(client, "alice", WRONG)
            if response.status_code == 429:
                throttled.clock.advance(int(response.headers["retry-after"]))
                response = await web(client, "alice", WRONG)
            assert response.status_code == 400
        assert outcome(await web(client, "alice", PASSWORD)) == (429, "4")
        throttled.clock.advance(4)
        response = await web(client, "alice", PASSWORD)
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard"


async def test_success_resets_the_account_failure_count(throttled: Throttled) -> None:
    async with throttled.site.client() as client:
        assert (await web(client, "alice", WRONG)).status_code == 400
        assert (await web(client, "alice", PASSWORD)).status_code == 303
        assert await throttled.limiter.failures("alice") == 0
        assert (await web(client, "alice", WRONG)).status_code == 400
        assert (await web(client, "alice", WRONG)).status_code == 400
        assert (await web(client, "alice", WRONG)).status_code == 429


async def test_correct_password_in_backoff_gets_the_same_login_page_429(
    throttled: Throttled,
) -> None:
    async with throttled.site.client() as client:
        for _ in range(2):
            await web(client, "alice", WRONG)
        wrong = await web(client, "alice", WRONG)
        right = await web(client, "alice", PASSWORD)
    assert outcome(wrong) == (429, "1")
    assert comparable(right) == comparable(wrong)


async def test_correct_password_in_backoff_gets_the_same_token_endpoint_429(
    throttled: Throttled,
) -> None:
    async with throttled.site.client() as client:
        for _ in range(2):
            await api(client, "alice", WRONG)
        wrong = await api(client, "alice", WRONG)
        right = await api(client, "alice", PASSWORD)
    assert outcome(wrong) == (429, "1")
    assert wrong.json()["error"] == "invalid_grant"
    assert comparable(right) == comparable(wrong)


async def test_throttled_login_page_keeps_a_usable_form(throttled: Throttled) -> None:
    async with throttled.site.client() as client:
        for _ in range(2):
            await web(client, "alice", WRONG)
        limited = await web(client, "alice", PASSWORD)
        assert limited.status_code == 429
        assert "Too many attempts" in limited.text
        assert 'name="password"' in limited.text
        throttled.clock.advance(1)
        form = {"username": "alice", "password": PASSWORD, "csrf_token": csrf_from(limited.text)}
        response = await client.post("/login", data=form, headers=ORIGIN)
    assert response.status_code == 303


async def test_unknown_user_is_treated_exactly_like_a_known_user(throttled: Throttled) -> None:
    """The same script, for alice (correct password whenever throttled) and for a name that
    does not exist, gives the same statuses, Retry-After values and API bodies."""

    async def script(name: str, password_when_throttled: str, peer: str) -> list[Any]:
        seen: list[Any] = []
        async with throttled.site.client(client=(peer, 4000)) as client:
            for channel, password, advance in [
                (web, WRONG, 0),
                (api, WRONG, 0),
                (web, password_when_throttled, 0),
                (api, password_when_throttled, 0),
                (api, WRONG, 1),
                (web, password_when_throttled, 0),
                (web, WRONG, 2),
                (api, password_when_throttled, 0),
                (api, WRONG, 4),
                (web, password_when_throttled, 0),
            ]:
                throttled.clock.advance(advance)
                response = await channel(client, name, password)
                body = response.json() if channel is api else None
                seen.append((*outcome(response), body))
        return seen

    known = await script("alice", PASSWORD, "198.51.100.1")
    unknown = await script("nobody", WRONG, "198.51.100.2")
    assert [status for status, _, _ in known] == [400, 400, 429, 429, 400, 429, 400, 429, 400, 429]
    assert unknown == known


# -- one budget for /login and /api/token ----------------------------------------------------


async def test_login_page_failures_count_for_the_token_endpoint(throttled: Throttled) -> None:
    async with throttled.site.client() as client:
        for _ in range(2):
            assert (await web(client, "alice", WRONG)).status_code == 400
        assert outcome(await api(client, "alice", PASSWORD)) == (429, "1")


async def test_token_endpoint_failures_count_for_the_login_page(throttled: Throttled) -> None:
    async with throttled.site.client() as client:
        for _ in range(2):
            assert (await api(client, "alice", WRONG)).status_code == 400
        assert outcome(await web(client, "alice", PASSWORD)) == (429, "1")


async def test_backoff_follows_the_account_to_another_address(throttled: Throttled) -> None:
    async with throttled.site.client(client=("198.51.100.1", 4000)) as first:
        for _ in range(2):
            await web(first, "alice", WRONG)
    async with throttled.site.client(client=("192.0.2.9", 4000)) as second:
        assert outcome(await api(second, "alice", PASSWORD)) == (429, "1")


# -- per-address limit -----------------------------------------------------------------------


@pytest.fixture
async def five_a_minute(site_factory: SiteFactory, make_settings: MakeSettings) -> Throttled:
    return await start(site_factory, make_settings, login_ip_limit="5/minute")


async def spend_address_budget(client: httpx.AsyncClient) -> None:
    """Five failed attempts from one address, each on another account, on both routes."""
    for i in range(5):
        if i % 2:
            response = await api(client, f"user{i}", WRONG)
        else:
            response = await web(client, f"user{i}", WRONG)
        assert response.status_code == 400


async def test_address_limit_applies_over_all_accounts(five_a_minute: Throttled) -> None:
    async with five_a_minute.site.client() as client:
        await spend_address_budget(client)
        assert outcome(await web(client, "alice", PASSWORD)) == (429, "60")
        assert outcome(await api(client, "alice", PASSWORD)) == (429, "60")
    async with five_a_minute.site.client(client=("192.0.2.9", 4000)) as elsewhere:
        assert (await web(elsewhere, "alice", PASSWORD)).status_code == 303


async def test_address_limit_ends_with_its_window(five_a_minute: Throttled) -> None:
    async with five_a_minute.site.client() as client:
        await spend_address_budget(client)
        assert (await web(client, "alice", PASSWORD)).status_code == 429
        five_a_minute.clock.advance(60)
        assert (await web(client, "alice", PASSWORD)).status_code == 303


async def test_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored(
    five_a_minute: Throttled,
) -> None:
    async with five_a_minute.site.client() as client:
        for i in range(5):
            spoof = {"X-Forwarded-For": f"192.0.2.{i + 1}"}
            assert (await api(client, f"user{i}", WRONG, headers=spoof)).status_code == 400
        spoof = {"X-Forwarded-For": "192.0.2.99"}
        assert outcome(await api(client, "alice", PASSWORD, headers=spoof)) == (429, "60")


async def test_trusted_proxy_clients_are_limited_one_by_one(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    throttled = await start(
        site_factory, make_settings, login_ip_limit="5/minute", trusted_proxies=[PROXY]
    )
    site = throttled.site
    async with site.client(
        client=(PROXY, 1234), headers={"X-Forwarded-For": "198.51.100.1"}
    ) as first:
        await spend_address_budget(first)
        assert outcome(await api(first, "alice", PASSWORD)) == (429, "60")
    async with site.client(
        client=(PROXY, 1234), headers={"X-Forwarded-For": "198.51.100.2"}
    ) as second:
        assert (await api(second, "alice", PASSWORD)).status_code == 200


@pytest.mark.parametrize(
    ("proxy_header", "header", "template"),
    [
        ("x-forwarded-for", "X-Forwarded-For", "{spoof}, 198.51.100.1"),
        ("forwarded", "Forwarded", 'for="{spoof}", for=198.51.100.1'),
    ],
)
async def test_spoofed_leftmost_forwarded_entry_does_not_escape_the_limit(
    site_factory: SiteFactory,
    make_settings: MakeSettings,
    proxy_header: str,
    header: str,
    template: str,
) -> None:
    throttled = await start(
        site_factory,
        make_settings,
        login_ip_limit="5/minute",
        trusted_proxies=[PROXY],
        proxy_header=proxy_header,
    )
    async with throttled.site.client(client=(PROXY, 1234)) as proxy:
        for i in range(5):
            forged = {header: template.format(spoof=f"192.0.2.{i + 1}")}
            assert (await api(proxy, f"user{i}", WRONG, headers=forged)).status_code == 400
        forged = {header: template.format(spoof="192.0.2.99")}
        assert outcome(await api(proxy, "alice", PASSWORD, headers=forged)) == (429, "60")


# -- the real wiring -------------------------------------------------------------------------


async def test_limiter_is_wired_to_the_configured_store(
    site_factory: SiteFactory, make_settings: MakeSettings, store_kind: str
) -> None:
    settings = make_settings(ratelimit_store=store_kind, login_ip_limit="1/hour")
    site: Site = await site_factory(settings)
    services = site.bastion.services
    limiter = services.authenticator.limiter
    assert isinstance(limiter, LoginThrottle)
    assert limiter.store is services.ratelimit_store
    await site.create_user("alice")
    async with site.client() as client:
        assert (await web(client, "nobody", WRONG)).status_code == 400
        status, retry_after = outcome(await web(client, "alice", PASSWORD))
    assert status == 429
    assert retry_after is not None
    assert 0 < int(retry_after) <= 3600


async def test_rate_limit_store_outage_refuses_logins_with_503(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    settings = make_settings(
        redis_url="redis://127.0.0.1:1/0",
        ratelimit_store="redis",
        session_store="sql",
        cache_store="memory",
        store_timeout=0.5,
    )
    site: Site = await site_factory(settings)
    await site.create_user("alice")
    async with site.client() as client:
        page = await web(client, "alice", PASSWORD)
        token = await api(client, "alice", PASSWORD)
    assert page.status_code == 503
    assert str(UNAVAILABLE["rate-limit store"]) in page.text
    assert token.status_code == 503
    assert token.json() == {"detail": "rate-limit store unavailable"}


# -- the password check of a signed-in user (password change) -------------------------------


async def change_password(
    client: httpx.AsyncClient, current: str, new: str = NEW_PASSWORD
) -> httpx.Response:
    form = {
        "csrf_token": await csrf_token(client, "/account/password"),
        "current_password": current,
        "new_password": new,
        "new_password_confirm": new,
    }
    return await client.post("/account/password", data=form, headers=ORIGIN)


async def test_wrong_current_passwords_lead_to_the_login_backoff(throttled: Throttled) -> None:
    async with throttled.site.client() as client:
        assert (await web(client, "alice", PASSWORD)).status_code == 303
        assert outcome(await change_password(client, WRONG)) == (400, None)
        assert outcome(await change_password(client, WRONG)) == (400, None)
        wrong = await change_password(client, WRONG)
        right = await change_password(client, PASSWORD)
        assert outcome(wrong) == (429, "1")
        assert "Too many attempts. Please wait 1 second and try again." in wrong.text
        assert 'name="current_password"' in wrong.text
        assert comparable(right) == comparable(wrong)  # a correct password learns nothing
        throttled.clock.advance(1)
        changed = await change_password(client, PASSWORD)
    assert changed.status_code == 200
    assert "Password changed" in changed.text
    assert await throttled.limiter.failures("alice") == 0


async def test_password_change_and_sign_in_spend_one_budget(throttled: Throttled) -> None:
    async with throttled.site.client() as signed_in, throttled.site.client() as other:
        assert (await web(signed_in, "alice", PASSWORD)).status_code == 303
        for _ in range(2):
            assert (await api(other, "alice", WRONG)).status_code == 400
        assert outcome(await change_password(signed_in, PASSWORD)) == (429, "1")
        throttled.clock.advance(1)
        assert (await web(other, "alice", PASSWORD)).status_code == 303  # resets the count
        for _ in range(2):
            assert (await change_password(signed_in, WRONG)).status_code == 400
        assert outcome(await web(other, "alice", PASSWORD)) == (429, "1")


async def test_password_change_counts_for_the_address_limit(five_a_minute: Throttled) -> None:
    async with five_a_minute.site.client() as client:
        assert (await web(client, "alice", PASSWORD)).status_code == 303
        for i in range(4):
            assert (await api(client, f"user{i}", WRONG)).status_code == 400
        limited = await change_password(client, PASSWORD)
    assert outcome(limited) == (429, "60")
    assert "Please wait 60 seconds" in limited.text


async def test_password_check_fails_closed_when_the_rate_limit_store_is_down(
    throttled: Throttled, closed_port: int
) -> None:
    site = throttled.site
    client_of_nobody = create_redis_client(f"redis://127.0.0.1:{closed_port}/0", timeout=0.5)
    down = RedisStore(
        client_of_nobody, namespace="down", component="rate-limit store", owns_client=True
    )
    async with site.client() as client:
        assert (await web(client, "alice", PASSWORD)).status_code == 303
        site.bastion.services.authenticator.limiter = LoginThrottle(down)
        try:
            response = await change_password(client, PASSWORD)
        finally:
            await down.aclose()
    assert response.status_code == 503
    assert str(UNAVAILABLE["rate-limit store"]) in response.text
    services = site.bastion.services
    user = await services.users.get_by_username("alice")
    assert user is not None
    assert (await services.passwords.verify_async(PASSWORD, user.password_hash)).ok


# -- registration -----------------------------------------------------------------------------


class CountingPasswords(Passwords):
    """The real hasher, counting the new hashes it makes."""

    hashes = 0

    async def hash_async(self, password: str) -> str:
        self.hashes += 1
        return await super().hash_async(password)


async def register(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    form = {
        "csrf_token": await csrf_token(client, "/register"),
        "username": username,
        "email": "",
        "password": password,
        "password_confirm": password,
    }
    return await client.post("/register", data=form, headers=ORIGIN)


async def open_registration(
    site_factory: SiteFactory, make_settings: MakeSettings, limit: str
) -> tuple[Site, CountingPasswords]:
    site: Site = await site_factory(make_settings(registration="open", registration_ip_limit=limit))
    counting = CountingPasswords()
    site.bastion.services.accounts.passwords = counting
    await site.create_user("alice")
    return site, counting


async def test_registration_is_limited_per_address_before_any_hashing(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site, counting = await open_registration(site_factory, make_settings, "3/hour")
    async with site.client() as client:
        assert (await register(client, "bob", NEW_PASSWORD)).status_code == 303
        assert (await register(client, "alice", NEW_PASSWORD)).status_code == 400
        assert (await register(client, "carol", "password")).status_code == 400  # policy
        hashes = counting.hashes
        limited = await register(client, "dave", NEW_PASSWORD)
        assert limited.status_code == 429
        assert 0 < int(limited.headers["retry-after"]) <= 3600
        assert "Too many sign-up attempts from your network" in limited.text
        assert 'value="dave"' in limited.text  # the form keeps what was typed
    assert counting.hashes == hashes  # refused before any hashing
    assert await site.bastion.services.users.get_by_username("dave") is None
    async with site.client(client=("192.0.2.9", 4000)) as elsewhere:
        assert (await register(elsewhere, "dave", NEW_PASSWORD)).status_code == 303


async def test_a_taken_name_costs_the_same_hashing_as_a_new_account(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site, counting = await open_registration(site_factory, make_settings, "100/hour")
    async with site.client() as client:
        assert (await register(client, "bob", NEW_PASSWORD)).status_code == 303
        after_success = counting.hashes
    async with site.client() as client:
        taken = await register(client, "ALICE", NEW_PASSWORD)
    assert taken.status_code == 400
    assert "already exists" in taken.text
    assert after_success == 1
    assert counting.hashes - after_success == after_success


async def test_registration_limit_ends_with_its_window_and_spares_sign_in(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site, _ = await open_registration(site_factory, make_settings, "1/minute")
    clock = FakeClock()
    accounts = site.bastion.services.accounts
    accounts.registration_limit = AddressLimit(
        MemoryStore("ratelimit", clock=clock), 1, 60, what="registration", prefix="register:addr"
    )
    async with site.client() as client:
        assert (await register(client, "bob", "password")).status_code == 400  # counts too
        assert outcome(await register(client, "bob", NEW_PASSWORD)) == (429, "60")
        assert (await web(client, "alice", PASSWORD)).status_code == 303
        clock.advance(60)
        assert (await register(client, "carol", NEW_PASSWORD)).status_code == 303


async def test_registration_fails_closed_when_the_rate_limit_store_is_down(
    site_factory: SiteFactory, make_settings: MakeSettings, closed_port: int
) -> None:
    site, counting = await open_registration(site_factory, make_settings, "10/hour")
    client_of_nobody = create_redis_client(f"redis://127.0.0.1:{closed_port}/0", timeout=0.5)
    down = RedisStore(
        client_of_nobody, namespace="down", component="rate-limit store", owns_client=True
    )
    site.bastion.services.accounts.registration_limit = AddressLimit(
        down, 10, 3600, what="registration", prefix="register:addr"
    )
    try:
        async with site.client() as client:
            response = await register(client, "bob", NEW_PASSWORD)
    finally:
        await down.aclose()
    assert response.status_code == 503
    assert str(UNAVAILABLE["rate-limit store"]) in response.text
    assert counting.hashes == 0
    assert await site.bastion.services.users.get_by_username("bob") is None


async def test_registration_limit_is_wired_to_the_configured_store(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site: Site = await site_factory(make_settings(registration="open"))
    services = site.bastion.services
    limit = services.accounts.registration_limit
    assert isinstance(limit, AddressLimit)
    assert limit.store is services.ratelimit_store
    assert (limit.limit, limit.window) == (10, 3600)  # BASTION_REGISTRATION_IP_LIMIT default
    assert services.accounts.limiter is services.authenticator.limiter


# -- an operator ends the back-off ------------------------------------------------------------


async def test_admin_enabling_a_user_ends_their_login_backoff(throttled: Throttled) -> None:
    site = throttled.site
    alice = await site.bastion.services.users.get_by_username("alice")
    assert alice is not None
    await site.create_user("root", roles=("admin",))
    async with site.client() as admin, site.client(client=("192.0.2.9", 4000)) as guesser:
        assert (await web(admin, "root", PASSWORD)).status_code == 303
        for _ in range(2):
            assert (await web(guesser, "alice", WRONG)).status_code == 400
        assert outcome(await web(guesser, "alice", PASSWORD)) == (429, "1")
        form = {"csrf_token": await csrf_token(admin, "/admin/users"), "active": "1"}
        enabled = await admin.post(f"/admin/users/{alice.id}/active", data=form, headers=ORIGIN)
        assert enabled.status_code == 303
        assert await throttled.limiter.failures("alice") == 0
        assert (await web(guesser, "alice", PASSWORD)).status_code == 303


async def test_a_password_reset_by_the_operator_ends_the_login_backoff(
    throttled: Throttled,
) -> None:
    site = throttled.site
    async with site.client() as guesser:
        for _ in range(2):
            await web(guesser, "alice", WRONG)
        assert outcome(await web(guesser, "alice", PASSWORD)) == (429, "1")
        alice = await site.bastion.services.users.get_by_username("alice")
        assert alice is not None
        await site.bastion.services.accounts.change_password(alice.id, NEW_PASSWORD)
        assert (await web(guesser, "alice", NEW_PASSWORD)).status_code == 303
