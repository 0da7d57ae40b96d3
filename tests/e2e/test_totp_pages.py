"""The authenticator-app (TOTP) and recovery-code pages over HTTP: enrolment by reading the
secret from the page, wrong codes, codes shown once, regeneration, turning off, CSRF."""

from __future__ import annotations

import html
import re
import time

import httpx
import pyotp
import pytest

from tests.e2e.conftest import (
    ORIGIN,
    MakeSettings,
    Site,
    SiteFactory,
    assert_refused,
    csrf_from,
    csrf_token,
    login,
)

SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')
CODES = re.compile(r'class="recovery-code">([0-9a-z-]+)<')


def code_for(secret: str, offset: int = 0) -> str:
    """The code an authenticator app shows now (``offset`` steps later)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * offset)


def wrong_code(secret: str) -> str:
    right = {code_for(secret, offset) for offset in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in right)


async def open_enrolment(client: httpx.AsyncClient) -> tuple[str, str]:
    """GET /account/totp: (the secret shown in #totp-secret, the page's CSRF token)."""
    page = await client.get("/account/totp")
    assert page.status_code == 200, page.text
    match = SECRET.search(page.text)
    assert match, "no #totp-secret on the page"
    return match.group(1), csrf_from(page.text)


async def enrol(client: httpx.AsyncClient) -> tuple[str, list[str]]:
    """TOTP turned on through the pages: (the secret, the recovery codes shown)."""
    secret, token = await open_enrolment(client)
    done = await client.post(
        "/account/totp", data={"code": code_for(secret), "csrf_token": token}, headers=ORIGIN
    )
    assert done.status_code == 200, done.text
    return secret, CODES.findall(done.text)


async def signed_in(site: Site, client: httpx.AsyncClient, name: str = "alice") -> int:
    user_id = await site.create_user(name)
    assert (await login(client, name)).status_code == 303
    return user_id


async def post(
    client: httpx.AsyncClient, path: str, page: str = "/account/security"
) -> httpx.Response:
    return await client.post(
        path, data={"csrf_token": await csrf_token(client, page)}, headers=ORIGIN
    )


async def audit_events(site: Site, user_id: int) -> list[str]:
    records = await site.bastion.services.users.list_audit(user_id=user_id)
    return [r.event for r in records]


# -- enrolment ------------------------------------------------------------------------------


async def test_security_page_shows_totp_off_and_no_recovery_codes(
    site: Site, client: httpx.AsyncClient
) -> None:
    await signed_in(site, client)

    page = await client.get("/account/security")

    assert page.status_code == 200
    assert '<span class="badge off" id="totp-status">off</span>' in page.text
    assert '<strong id="recovery-codes-left">0</strong>' in page.text
    assert 'href="/account/totp"' in page.text
    assert 'href="/account/security" aria-current="page">Security</a>' in page.text


async def test_enrolment_page_shows_an_inline_qr_code_and_the_secret(
    site: Site, client: httpx.AsyncClient
) -> None:
    user_id = await signed_in(site, client)

    page = await client.get("/account/totp")

    assert page.status_code == 200
    assert "<svg" in page.text
    secret = SECRET.search(page.text)
    assert secret is not None
    assert len(secret.group(1)) == 32
    assert "no-store" in page.headers["Cache-Control"]  # the secret stays out of caches
    # TOTP is not on before a code proves the app has the secret.
    assert (await site.bastion.services.mfa.summary(user_id)).totp is False


async def test_reloading_the_enrolment_page_keeps_the_secret_the_app_may_hold(
    site: Site, client: httpx.AsyncClient
) -> None:
    await signed_in(site, client)

    first, _ = await open_enrolment(client)
    again, token = await open_enrolment(client)

    assert again == first
    done = await client.post(
        "/account/totp", data={"code": code_for(first), "csrf_token": token}, headers=ORIGIN
    )
    assert len(CODES.findall(done.text)) == 10


async def test_correct_code_turns_totp_on_and_shows_ten_recovery_codes_once(
    site: Site, client: httpx.AsyncClient
) -> None:
    user_id = await signed_in(site, client)

    secret, codes = await enrol(client)

    assert len(codes) == 10
    assert len(set(codes)) == 10
    security = await client.get("/account/security")
    assert '<span class="badge current" id="totp-status">on</span>' in security.text
    assert '<strong id="recovery-codes-left">10</strong>' in security.text
    assert not any(code in security.text for code in codes)  # shown once, never again
    assert (await client.get("/account/totp")).headers["location"].startswith("/account/security")
    assert "mfa.totp.enabled" in await audit_events(site, user_id)
    assert await site.bastion.services.mfa.verify_totp(user_id, code_for(secret, 1))


async def test_wrong_code_is_refused_with_the_same_secret_and_a_clear_message(
    site: Site, client: httpx.AsyncClient
) -> None:
    user_id = await signed_in(site, client)
    secret, token = await open_enrolment(client)

    wrong = await client.post(
        "/account/totp", data={"code": wrong_code(secret), "csrf_token": token}, headers=ORIGIN
    )

    assert wrong.status_code == 400
    assert "That code is not right" in html.unescape(wrong.text)
    assert f'id="totp-secret">{secret}<' in wrong.text  # the app already holds this one
    assert 'class="recovery-code"' not in wrong.text
    assert (await site.bastion.services.mfa.summary(user_id)).totp is False
    assert "mfa.failure" in await audit_events(site, user_id)
    # The same secret still turns on with a right code.
    right = await client.post(
        "/account/totp",
        data={"code": code_for(secret), "csrf_token": csrf_from(wrong.text)},
        headers=ORIGIN,
    )
    assert right.status_code == 200
    assert len(CODES.findall(right.text)) == 10


async def test_wrong_codes_share_the_accounts_back_off(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await site_factory(make_settings(login_max_failures=2))
    async with site.client() as client:
        await signed_in(site, client)
        secret, token = await open_enrolment(client)
        statuses = []
        for _ in range(3):
            answer = await client.post(
                "/account/totp",
                data={"code": wrong_code(secret), "csrf_token": token},
                headers=ORIGIN,
            )
            statuses.append(answer.status_code)
            token = csrf_from(answer.text)

    assert statuses == [400, 400, 429]
    assert answer.headers["Retry-After"] == "1"
    assert "Too many attempts" in answer.text


# -- recovery codes -------------------------------------------------------------------------


async def test_used_recovery_code_is_counted_and_mentioned_on_the_security_page(
    site: Site, client: httpx.AsyncClient
) -> None:
    user_id = await signed_in(site, client)
    _, codes = await enrol(client)

    assert await site.bastion.services.mfa.use_recovery_code(user_id, codes[0])
    assert not await site.bastion.services.mfa.use_recovery_code(user_id, codes[0])

    page = await client.get("/account/security")
    assert '<strong id="recovery-codes-left">9</strong>' in page.text
    assert 'id="recovery-code-used"' in page.text
    assert "mfa.recovery_code.used" in await audit_events(site, user_id)


async def test_new_recovery_codes_are_shown_once_and_kill_the_old_ones(
    site: Site, client: httpx.AsyncClient
) -> None:
    user_id = await signed_in(site, client)
    _, old = await enrol(client)

    answer = await post(client, "/account/recovery-codes")

    assert answer.status_code == 200
    new = CODES.findall(answer.text)
    assert len(new) == 10
    assert not set(new) & set(old)
    mfa = site.bastion.services.mfa
    assert not await mfa.use_recovery_code(user_id, old[0])
    assert await mfa.use_recovery_code(user_id, new[0])
    page = await client.get("/account/security")
    assert '<strong id="recovery-codes-left">9</strong>' in page.text
    assert not any(code in page.text for code in new)
    assert "mfa.recovery_codes.regenerated" in await audit_events(site, user_id)


async def test_recovery_codes_need_a_second_factor_first(
    site: Site, client: httpx.AsyncClient
) -> None:
    user_id = await signed_in(site, client)

    answer = await post(client, "/account/recovery-codes")

    assert answer.status_code == 400
    assert 'class="recovery-code"' not in answer.text
    assert (await site.bastion.services.mfa.summary(user_id)).recovery_codes_left == 0


# -- turning off ----------------------------------------------------------------------------


async def test_turning_totp_off_removes_it_and_its_recovery_codes(
    site: Site, client: httpx.AsyncClient
) -> None:
    user_id = await signed_in(site, client)
    secret, codes = await enrol(client)

    answer = await post(client, "/account/totp/disable")

    assert answer.status_code == 303
    assert answer.headers["location"] == "/account/security?done=totp-disabled"
    page = await client.get(answer.headers["location"])
    assert '<span class="badge off" id="totp-status">off</span>' in page.text
    assert '<strong id="recovery-codes-left">0</strong>' in page.text
    mfa = site.bastion.services.mfa
    assert not await mfa.verify_totp(user_id, code_for(secret, 1))
    assert not await mfa.use_recovery_code(user_id, codes[0])
    assert "mfa.totp.disabled" in await audit_events(site, user_id)


async def test_the_last_factor_stays_when_bastion_mfa_requires_one(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await site_factory(make_settings(mfa="required"))
    async with site.client() as client:
        user_id = await signed_in(site, client)
        # The sign-in could only set up a factor; doing so makes it a full session.
        assert (await client.get("/dashboard")).headers["location"] == "/account/security"
        await enrol(client)
        assert (await client.get("/dashboard")).status_code == 200

        refused = await post(client, "/account/totp/disable")

    assert refused.status_code == 400
    assert "must keep a second factor" in refused.text
    assert (await site.bastion.services.mfa.summary(user_id)).totp is True


# -- CSRF -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/account/totp", "/account/totp/disable", "/account/recovery-codes"]
)
async def test_every_factor_form_needs_a_csrf_token(
    site: Site, client: httpx.AsyncClient, path: str
) -> None:
    user_id = await signed_in(site, client)
    secret, _ = await enrol(client)
    before = await site.bastion.services.mfa.summary(user_id)
    events = await audit_events(site, user_id)

    refused = await client.post(path, data={"code": code_for(secret, 1)}, headers=ORIGIN)

    assert_refused(refused)
    assert await site.bastion.services.mfa.summary(user_id) == before
    assert await audit_events(site, user_id) == events


async def test_factor_pages_need_a_signed_in_user(site: Site, client: httpx.AsyncClient) -> None:
    for path in ("/account/security", "/account/totp"):
        answer = await client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login")
