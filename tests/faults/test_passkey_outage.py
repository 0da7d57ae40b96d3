"""Passkeys during a PostgreSQL outage (sessions and challenges in Redis, so the routes are
reached): registration, sign-in, renaming and removing answer 503 naming the database, never
a 500, and change nothing; with the database back, the passkey signs in."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.conftest import CSRF_META
from tests.faults.conftest import (
    Watch,
    assert_unavailable,
    browser,
    create_user,
    server_log,
    sign_in,
    wait_until,
)
from tests.faults.test_database_outage import (  # noqa: F401  (module-scoped fixture)
    OUTAGES,
    Site,
    postgres_unreachable,
    redis_sessions_site,
)
from tests.soft_authenticator import SoftAuthenticator

pytestmark = [pytest.mark.backend("postgres"), pytest.mark.slow]


def meta_token(watch: Watch, client: httpx.Client, path: str) -> str:
    found = CSRF_META.search(watch.get(client, path).text)
    assert found is not None, path
    return found.group(1)


def post_json(
    watch: Watch, client: httpx.Client, path: str, token: str, body: object = None
) -> httpx.Response:
    origin = str(client.base_url).rstrip("/")
    headers = {"X-CSRF-Token": token, "Accept": "application/json", "Origin": origin}
    return watch.post(client, path, json=body or {}, headers=headers)


@pytest.mark.parametrize("how", OUTAGES)
def test_passkey_routes_get_503_without_the_database_and_work_after(
    redis_sessions_site: Site,  # noqa: F811
    how: str,
) -> None:
    site = redis_sessions_site
    name = f"passkey-{how}"
    create_user(site.live, name)
    watch = Watch()
    device = SoftAuthenticator(site.live.url)
    account = sign_in(site.live, name)
    token = meta_token(watch, account, "/account/security")
    options = post_json(watch, account, "/account/passkeys/options", token).json()
    body = {"credential": device.create(options), "name": "Laptop"}
    assert post_json(watch, account, "/account/passkeys", token, body).status_code == 201
    passkey_id = re.search(r"/account/passkeys/(\d+)/remove", account.get("/account/security").text)
    assert passkey_id is not None
    visitor = browser(site.live)
    visitor_token = meta_token(watch, visitor, "/login")
    sign_in_options = post_json(watch, visitor, "/login/passkey/options", visitor_token).json()

    with postgres_unreachable(site.database.proxy, how):
        assert_unavailable(
            post_json(watch, account, "/account/passkeys/options", token), "database"
        )
        answer = {"credential": device.get(sign_in_options)}
        assert_unavailable(
            post_json(watch, visitor, "/login/passkey", visitor_token, answer), "database"
        )
        form = {"csrf_token": token, "name": "Renamed"}
        for action in ("rename", "remove"):
            path = f"/account/passkeys/{passkey_id.group(1)}/{action}"
            answered = watch.post(account, path, data=form, headers={"Origin": site.live.url})
            assert_unavailable(answered, "database")

    def security_page_works() -> bool:
        return watch.get(account, "/account/security").status_code == 200

    assert wait_until(security_page_works) < 10
    assert "Laptop" in watch.get(account, "/account/security").text  # nothing changed
    again = post_json(watch, visitor, "/login/passkey/options", visitor_token).json()
    signed_in = post_json(
        watch, visitor, "/login/passkey", visitor_token, {"credential": device.get(again)}
    )
    assert signed_in.status_code == 200, signed_in.text
    watch.assert_clean_errors(site.forbidden())
    assert 500 not in watch.statuses()
    assert "Traceback" not in server_log(site.live, site.data_dir)
