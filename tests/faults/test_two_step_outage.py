"""Two-step sign-in while Redis (sessions, pending sign-ins, rate limits) does not answer,
against a real ``bastion serve``: the second step and the token endpoint's grants answer
503 within a bounded time, never a 500, and let nobody in; the pending state survives the
outage and completes the sign-in once Redis is back."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pyotp
import pytest

from tests.e2e.conftest import csrf_from
from tests.faults.conftest import (
    PASSWORD,
    Watch,
    assert_not_signed_in,
    assert_unavailable,
    browser,
    create_user,
    sign_in,
    wait_until,
)
from tests.faults.servers import RedisServer
from tests.faults.test_redis_outage import Site, _site, redis_hung

pytestmark = [pytest.mark.backend("redis"), pytest.mark.slow]
MFA_GRANT = "urn:bastion:grant-type:mfa"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, private_redis: RedisServer) -> Iterator[Site]:
    with _site(tmp_path_factory, private_redis, {}) as site:
        yield site


def enrol_totp(site: Site, username: str) -> pyotp.TOTP:
    """TOTP set up through the pages, as a user does; the browser then signs out."""
    create_user(site.live, username)
    client = sign_in(site.live, username)
    page = client.get("/account/totp")
    found = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
    assert found is not None, page.text[:300]
    totp = pyotp.TOTP(found.group(1))
    origin = {"Origin": site.live.url}
    done = client.post(
        "/account/totp",
        data={"code": totp.now(), "csrf_token": csrf_from(page.text)},
        headers=origin,
    )
    assert done.status_code == 200, done.text[:300]
    client.post("/logout", data={"csrf_token": csrf_from(done.text)}, headers=origin)
    return totp


def test_the_second_step_fails_closed_and_completes_after_the_outage(site: Site) -> None:
    totp = enrol_totp(site, "carol")
    watch = Watch()
    origin = {"Origin": site.live.url}
    with browser(site.live) as client, browser(site.live) as api:
        page = client.get("/login")
        form = {"username": "carol", "password": PASSWORD, "csrf_token": csrf_from(page.text)}
        assert client.post("/login", data=form, headers=origin).headers["location"] == (
            "/login/verify"
        )
        verify = client.get("/login/verify")
        token = csrf_from(verify.text)
        grant = {"grant_type": "password", "username": "carol", "password": PASSWORD}
        mfa_token = api.post("/api/token", data=grant).json()["mfa_token"]
        # A code the server accepts after the outage: the next step's (enrolment used this one).
        later = totp.at(time.time() + 30)

        with redis_hung(site.redis):
            assert_unavailable(watch.get(client, "/login/verify"), "session store")
            attempt = watch.post(
                client, "/login/verify", data={"code": later, "csrf_token": token}, headers=origin
            )
            assert_not_signed_in(attempt)
            tokens = watch.post(
                api,
                "/api/token",
                data={"grant_type": MFA_GRANT, "mfa_token": mfa_token, "otp": later},
            )
            assert tokens.status_code == 503
            assert "access_token" not in tokens.text

        def verify_page_works() -> bool:
            return watch.get(client, "/login/verify").status_code == 200

        wait_until(verify_page_works)
        done = watch.post(
            client, "/login/verify", data={"code": later, "csrf_token": token}, headers=origin
        )
        assert done.status_code == 303, done.text[:300]
        assert done.headers["location"] == "/dashboard"
        assert client.get("/api/me").json()["amr"] == ["pwd", "otp", "mfa"]
    watch.assert_clean_errors(site.forbidden())
    assert 500 not in watch.statuses()
