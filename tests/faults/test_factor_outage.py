"""The second-factor pages during a PostgreSQL outage (sessions in Redis, so the pages are
reached): each answers 503 naming the database, never a 500, and nothing changes; with the
database back, enrolment works."""

from __future__ import annotations

import re

import pyotp
import pytest

from tests.e2e.conftest import csrf_from
from tests.faults.conftest import Watch, assert_unavailable, server_log, sign_in, wait_until
from tests.faults.test_database_outage import (  # noqa: F401  (module-scoped fixture)
    OUTAGES,
    Site,
    postgres_unreachable,
    redis_sessions_site,
)

pytestmark = [pytest.mark.backend("postgres"), pytest.mark.slow]


@pytest.mark.parametrize("how", OUTAGES)
def test_factor_pages_get_503_without_the_database_and_work_after(
    redis_sessions_site: Site,  # noqa: F811
    how: str,
) -> None:
    site = redis_sessions_site
    client = sign_in(site.live, site.user)
    watch = Watch()
    page = watch.get(client, "/account/totp")
    assert page.status_code == 200
    found = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
    assert found is not None
    secret, token = found.group(1), csrf_from(page.text)
    origin = {"Origin": site.live.url}

    with postgres_unreachable(site.database.proxy, how):
        assert_unavailable(watch.get(client, "/account/security"), "database")
        assert_unavailable(watch.get(client, "/account/totp"), "database")
        code = {"code": pyotp.TOTP(secret).now(), "csrf_token": token}
        assert_unavailable(
            watch.post(client, "/account/totp", data=code, headers=origin), "database"
        )
        for path in ("/account/totp/disable", "/account/recovery-codes"):
            answer = watch.post(client, path, data={"csrf_token": token}, headers=origin)
            assert_unavailable(answer, "database")

    def security_page_works() -> bool:
        return watch.get(client, "/account/security").status_code == 200

    assert wait_until(security_page_works) < 10
    again = watch.get(client, "/account/totp")
    assert f'id="totp-secret">{secret}<' in again.text  # nothing changed meanwhile
    done = watch.post(
        client,
        "/account/totp",
        data={"code": pyotp.TOTP(secret).now(), "csrf_token": csrf_from(again.text)},
        headers=origin,
    )
    assert done.status_code == 200
    assert done.text.count('class="recovery-code"') == 10
    disable = watch.post(
        client, "/account/totp/disable", data={"csrf_token": csrf_from(done.text)}, headers=origin
    )
    assert disable.status_code == 303
    watch.assert_clean_errors(site.forbidden())
    assert 500 not in watch.statuses()
    assert "Traceback" not in server_log(site.live, site.data_dir)
