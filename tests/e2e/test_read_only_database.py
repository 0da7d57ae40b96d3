"""A partial outage is no password oracle: with a database that answers reads but refuses
writes (a hot standby after a failover, a read-only mode), a right password, a wrong one and
an unknown user get the same 503, on the login page, the token endpoint and the password
change alike.

The database is real (SQLite or PostgreSQL, as the site's variant says): every connection
the app opens after :func:`refuse_writes` is made read-only by the server itself
(``PRAGMA query_only`` / ``default_transaction_read_only``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.fastapi.errors import UNAVAILABLE
from tests.e2e.conftest import PASSWORD, MakeSettings, Site, SiteFactory, login, store_params
from tests.e2e.test_bruteforce import WRONG, api, change_password, comparable

# Sessions outside the database (memory on SQLite, Redis on PostgreSQL): what is measured
# is the sign-in's own database writes.
pytestmark = pytest.mark.parametrize("store_kind", store_params("memory", "redis"))

READ_ONLY = {
    "sqlite": "PRAGMA query_only = ON",
    "postgresql": "SET default_transaction_read_only = on",
}


async def refuse_writes(engine: AsyncEngine, database: str) -> None:
    """From now on every connection of ``engine`` reads but cannot write."""

    def read_only(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute(READ_ONLY[database])
        cursor.close()

    event.listen(engine.sync_engine, "connect", read_only)
    await engine.dispose()  # pooled connections were opened writable


async def site_with_alice(site_factory: SiteFactory, make_settings: MakeSettings) -> Site:
    site: Site = await site_factory(make_settings())
    await site.create_user("alice")
    return site


def assert_alike(responses: list[httpx.Response]) -> None:
    first = responses[0]
    assert first.status_code == 503
    for response in responses[1:]:
        assert comparable(response) == comparable(first)


async def test_sign_in_answers_alike_when_the_database_refuses_writes(
    site_factory: SiteFactory, make_settings: MakeSettings, database_kind: str
) -> None:
    site = await site_with_alice(site_factory, make_settings)
    await refuse_writes(site.bastion.services.engine, database_kind)
    async with site.client() as client:
        pages = [
            await login(client, "alice", PASSWORD),
            await login(client, "alice", WRONG),
            await login(client, "nobody", WRONG),
        ]
        tokens = [
            await api(client, "alice", PASSWORD),
            await api(client, "alice", WRONG),
            await api(client, "nobody", WRONG),
        ]
    assert_alike(pages)
    assert str(UNAVAILABLE["database"]) in pages[0].text
    assert "bastion_session" not in pages[0].headers.get("set-cookie", "")
    assert_alike(tokens)
    assert tokens[0].json() == {"detail": "database unavailable"}


async def test_password_change_answers_alike_when_the_database_refuses_writes(
    site_factory: SiteFactory, make_settings: MakeSettings, database_kind: str
) -> None:
    site = await site_with_alice(site_factory, make_settings)
    async with site.client() as client:
        assert (await login(client, "alice")).status_code == 303
        await refuse_writes(site.bastion.services.engine, database_kind)
        answers = [
            await change_password(client, PASSWORD),
            await change_password(client, WRONG),
        ]
    assert_alike(answers)
    assert str(UNAVAILABLE["database"]) in answers[0].text
