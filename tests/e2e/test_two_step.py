"""Two-step sign-in (/login/verify) on every session store and both databases (the redis
variant runs on PostgreSQL): the password alone gives no session, the pending state is
bound to the browser, used once, and its failures feed the account's back-off."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bastion.clock import FakeClock
from bastion.mfa.totp import code_at, current_step
from tests.e2e.conftest import (
    ORIGIN,
    Site,
    assert_refused,
    csrf_from,
    login,
)

PENDING_COOKIE = "bastion_mfa"


class AuthenticatorApp:
    """The user's phone: a TOTP secret and a clock the site's factor service shares, moved
    one step before each code so no code is ever a replay."""

    def __init__(self, secret: str, clock: FakeClock) -> None:
        self.secret = secret
        self.clock = clock

    def code(self) -> str:
        self.clock.advance(30)
        return code_at(self.secret, current_step(self.clock))


async def enrol_totp(site: Site, user_id: int, name: str) -> tuple[AuthenticatorApp, list[str]]:
    """TOTP turned on for the user (through the factor service), with its recovery codes."""
    mfa = site.bastion.services.mfa
    if not isinstance(mfa.clock, FakeClock):
        mfa.clock = FakeClock()
    enrolment = await mfa.begin_totp(user_id, name)
    phone = AuthenticatorApp(enrolment.secret, mfa.clock)
    codes = await mfa.confirm_totp(user_id, phone.code())
    return phone, codes


async def user_with_totp(site: Site, name: str = "alice") -> tuple[AuthenticatorApp, list[str]]:
    user_id = await site.create_user(name)
    return await enrol_totp(site, user_id, name)


def set_cookie(response: httpx.Response, name: str) -> str | None:
    """The value ``response`` sets for cookie ``name`` (None: not set, or cleared)."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}=") and "Max-Age=0" not in header:
            return header.split(";", 1)[0].split("=", 1)[1]
    return None


async def verify(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    page = await client.get("/login/verify")
    assert page.status_code == 200, page.text
    return await client.post(
        "/login/verify", data={**fields, "csrf_token": csrf_from(page.text)}, headers=ORIGIN
    )


async def test_a_user_with_totp_signs_in_with_the_password_then_a_code(
    site: Site, client: httpx.AsyncClient
) -> None:
    phone, _ = await user_with_totp(site)
    response = await login(client, "alice")
    assert response.status_code == 303
    assert response.headers["location"] == "/login/verify"
    assert set_cookie(response, "bastion_session") is None
    pending_header = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith(PENDING_COOKIE)
    )
    assert "HttpOnly" in pending_header
    assert "SameSite=Lax" in pending_header
    assert "Max-Age=300" in pending_header
    assert await site.bastion.services.sessions.list_all() == []

    page = await client.get("/login/verify")
    assert page.status_code == 200
    assert 'name="code"' in page.text
    assert 'name="recovery_code"' in page.text
    assert 'autocomplete="one-time-code"' in page.text
    done = await client.post(
        "/login/verify",
        data={"code": phone.code(), "csrf_token": csrf_from(page.text)},
        headers=ORIGIN,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/dashboard"
    assert set_cookie(done, "bastion_session") is not None
    assert any(
        h.startswith(f"{PENDING_COOKIE}=;") and "Max-Age=0" in h
        for h in done.headers.get_list("set-cookie")
    )
    me = (await client.get("/api/me")).json()
    assert me["username"] == "alice"
    assert me["amr"] == ["pwd", "otp", "mfa"]
    success = next(
        e for e in await site.bastion.services.users.list_audit(0, 20) if e.event == "login.success"
    )
    assert success.detail is not None
    assert success.detail["amr"] == ["pwd", "otp", "mfa"]


async def test_the_password_alone_reaches_nothing(site: Site, client: httpx.AsyncClient) -> None:
    await user_with_totp(site)
    await login(client, "alice", next_path="/account/sessions")
    dashboard = await client.get("/dashboard")
    assert dashboard.status_code == 303
    assert dashboard.headers["location"].startswith("/login")
    assert (await client.get("/account/sessions")).status_code == 303
    assert (await client.get("/api/me")).status_code == 401
    assert await site.bastion.services.sessions.list_all() == []


async def test_next_and_remember_me_survive_the_second_step(
    site: Site, client: httpx.AsyncClient
) -> None:
    phone, _ = await user_with_totp(site)
    await login(client, "alice", remember=True, next_path="/account/sessions")
    done = await verify(client, code=phone.code())
    assert done.headers["location"] == "/account/sessions"
    session_header = next(
        h for h in done.headers.get_list("set-cookie") if h.startswith("bastion_session=")
    )
    remember = site.bastion.settings.remember_me_timeout
    assert f"Max-Age={remember}" in session_header


async def test_the_pending_state_cannot_be_replayed_after_the_sign_in(
    site: Site, client: httpx.AsyncClient
) -> None:
    phone, _ = await user_with_totp(site)
    await login(client, "alice")
    page = await client.get("/login/verify")
    # Everything the browser holds before completing: its cookies and the form's token.
    saved_cookies = dict(client.cookies)
    token = csrf_from(page.text)
    done = await client.post(
        "/login/verify", data={"code": phone.code(), "csrf_token": token}, headers=ORIGIN
    )
    assert done.status_code == 303
    async with site.client(cookies=saved_cookies) as replay:
        again = await replay.post(
            "/login/verify", data={"code": phone.code(), "csrf_token": token}, headers=ORIGIN
        )
        assert again.status_code == 303
        assert again.headers["location"] == "/login?done=verify-expired"
        assert set_cookie(again, "bastion_session") is None
        assert (await replay.get("/api/me")).status_code == 401
    assert len(await site.bastion.services.sessions.list_all()) == 1


async def test_another_browser_cannot_use_the_pending_state(
    site: Site, client: httpx.AsyncClient
) -> None:
    phone, _ = await user_with_totp(site)
    await login(client, "alice")
    stolen = client.cookies[PENDING_COOKIE]
    async with site.client() as other:
        page = await other.get("/login")  # its own pre-session
        other.cookies.set(PENDING_COOKIE, stolen)
        assert (await other.get("/login/verify")).headers["location"] == (
            "/login?done=verify-expired"
        )
        other.cookies.set(PENDING_COOKIE, stolen)
        attempt = await other.post(
            "/login/verify",
            data={"code": phone.code(), "csrf_token": csrf_from(page.text)},
            headers=ORIGIN,
        )
        assert attempt.status_code == 303
        assert attempt.headers["location"] == "/login?done=verify-expired"
        assert set_cookie(attempt, "bastion_session") is None
    # The owner's pending state is untouched by the attempt.
    done = await verify(client, code=phone.code())
    assert done.headers["location"] == "/dashboard"


async def test_without_a_pending_state_the_verify_page_sends_back_to_sign_in(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/login/verify")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?done=verify-expired"
    notice = await client.get(response.headers["location"])
    assert "no longer valid" in notice.text


async def test_a_wrong_code_keeps_the_pending_state_and_is_audited(
    site: Site, client: httpx.AsyncClient
) -> None:
    phone, _ = await user_with_totp(site)
    await login(client, "alice")
    wrong = await verify(client, code="000000" if phone.code() != "000000" else "111111")
    assert wrong.status_code == 400
    assert "not valid" in wrong.text
    assert set_cookie(wrong, "bastion_session") is None
    failure = next(
        e for e in await site.bastion.services.users.list_audit(0, 20) if e.event == "mfa.failure"
    )
    assert failure.detail == {"method": "totp", "channel": "web", "reason": "code"}
    done = await verify(client, code=phone.code())
    assert done.headers["location"] == "/dashboard"


async def test_wrong_codes_feed_the_accounts_back_off(
    site_factory: Any, make_settings: Any
) -> None:
    site = await site_factory(make_settings(login_max_failures=3, login_max_backoff=60))
    phone, _ = await user_with_totp(site)
    async with site.client() as client:
        await login(client, "alice")  # counted until the second factor is proved
        assert (await verify(client, code="12345x")).status_code == 400
        assert (await verify(client, code="12345y")).status_code == 400
        # Back-off: even the right code waits, and signing in again does not help.
        throttled = await verify(client, code=phone.code())
        assert throttled.status_code == 429
        assert "Retry-After" in throttled.headers
        assert (await login(client, "alice")).status_code == 429


async def test_the_pending_state_ends_after_five_wrong_codes(
    site_factory: Any, make_settings: Any
) -> None:
    site = await site_factory(make_settings(login_max_failures=20))
    await user_with_totp(site)
    async with site.client() as client:
        await login(client, "alice")
        for _ in range(4):
            assert (await verify(client, code="99999x")).status_code == 400
        last = await verify(client, code="99999x")
        assert last.status_code == 303
        assert last.headers["location"] == "/login?done=verify-expired"


async def test_a_recovery_code_signs_in_once_and_the_use_is_recorded(
    site: Site, client: httpx.AsyncClient
) -> None:
    _, codes = await user_with_totp(site)
    await login(client, "alice")
    done = await verify(client, recovery_code=codes[0])
    assert done.status_code == 303
    assert (await client.get("/api/me")).json()["amr"] == ["pwd", "rec", "mfa"]
    events = [e.event for e in await site.bastion.services.users.list_audit(0, 20)]
    assert "mfa.recovery_code.used" in events
    alice = await site.bastion.services.users.get_by_username("alice")
    assert alice is not None
    summary = await site.bastion.services.mfa.summary(alice.id)
    assert summary.recovery_codes_left == len(codes) - 1
    security = await client.get("/account/security")
    assert 'id="recovery-code-used"' in security.text
    async with site.client() as again:
        await login(again, "alice")
        refused = await verify(again, recovery_code=codes[0])
        assert refused.status_code == 400
        assert set_cookie(refused, "bastion_session") is None


async def test_the_verify_form_refuses_a_post_without_the_csrf_token(
    site: Site, client: httpx.AsyncClient
) -> None:
    phone, _ = await user_with_totp(site)
    await login(client, "alice")
    page = await client.get("/login/verify")
    assert 'name="csrf_token"' in page.text
    for form in ({"code": phone.code()}, {"code": phone.code(), "csrf_token": "forged"}):
        assert_refused(await client.post("/login/verify", data=form, headers=ORIGIN))
    done = await verify(client, code=phone.code())
    assert done.headers["location"] == "/dashboard"


async def test_a_signed_in_browser_signing_in_as_another_user_ends_its_old_session(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("bob")
    phone, _ = await enrol_totp(site, await site.create_user("alice"), "alice")
    await login(client, "bob")
    bob_session = (await client.get("/api/me")).json()["session_id"]
    assert (await login(client, "alice")).headers["location"] == "/login/verify"
    # Until the second step, the browser is still bob's.
    assert (await client.get("/api/me")).json()["username"] == "bob"
    await verify(client, code=phone.code())
    assert (await client.get("/api/me")).json()["username"] == "alice"
    assert await site.bastion.services.sessions.get(bob_session) is None


@pytest.mark.parametrize("field", ["code", "recovery_code"])
async def test_an_empty_form_asks_for_a_code_and_keeps_the_state(
    site: Site, client: httpx.AsyncClient, field: str
) -> None:
    phone, _ = await user_with_totp(site)
    await login(client, "alice")
    empty = await verify(client, **{field: "  "})
    assert empty.status_code == 400
    assert "Enter the code" in empty.text
    assert (await verify(client, code=phone.code())).status_code == 303
