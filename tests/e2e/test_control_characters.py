"""NUL bytes and other control characters in what a client sends: the same clear answer on
SQLite and PostgreSQL (which refuses NUL in text), never a 5xx; look-alike user names."""

from __future__ import annotations

import re

import httpx
import pytest

from bastion.settings import Settings
from tests.e2e.conftest import (
    ORIGIN,
    PASSWORD,
    MakeSettings,
    Site,
    SiteFactory,
    csrf_from,
    form_error,
    login,
)

GENERIC_FAILURE = "Invalid user name or password."
NEW_PASSWORD = "a long new passphrase 42"


@pytest.fixture
async def open_site(site_factory: SiteFactory, make_settings: MakeSettings) -> Site:
    site: Site = await site_factory(make_settings(registration="open"))
    return site


async def post_login(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    form = {"csrf_token": csrf_from((await client.get("/login")).text), **fields}
    return await client.post("/login", data=form, headers=ORIGIN)


async def audited_names(site: Site) -> list[str | None]:
    return [event.username for event in await site.bastion.services.users.list_audit()]


def alert(response: httpx.Response) -> str:
    message = form_error(response.text)
    assert message, response.text[:500]
    return message


@pytest.mark.parametrize("name", ["alice\x00", "\x00", "ali\x00ce", "alice\x01", "alice\x1b"])
async def test_control_character_in_the_user_name_is_an_unknown_user(site: Site, name: str) -> None:
    await site.create_user("alice")
    async with site.client() as client:
        response = await post_login(client, username=name, password=PASSWORD)

    assert response.status_code == 400
    assert GENERIC_FAILURE in response.text
    # Recorded, with the control character made visible, on both databases alike.
    assert await audited_names(site) == [re.sub("[\x00-\x1f]", "\ufffd", name)]


async def test_nul_in_the_password_is_a_wrong_password(site: Site) -> None:
    await site.create_user("alice")
    async with site.client() as client:
        response = await post_login(client, username="alice", password=PASSWORD + "\x00")

    assert response.status_code == 400
    assert GENERIC_FAILURE in response.text


@pytest.mark.parametrize(
    ("field", "value"), [("remember", "on\x00"), ("next", "/account/sessions\x00")]
)
async def test_nul_in_remember_or_next_still_signs_in_safely(
    site: Site, field: str, value: str
) -> None:
    await site.create_user("alice")
    async with site.client() as client:
        response = await post_login(client, username="alice", password=PASSWORD, **{field: value})

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"  # an unusable next is not followed


async def test_nul_in_the_user_agent_is_recorded_cleaned(site: Site) -> None:
    await site.create_user("alice")
    async with site.client(headers={"User-Agent": "Agent\x00/1.0"}) as client:
        failed = await login(client, "alice", "wrong password")
        signed_in = await login(client, "alice")
        sessions_page = await client.get("/account/sessions")

    assert failed.status_code == 400
    assert signed_in.status_code == 303
    assert sessions_page.status_code == 200
    agents = [e.user_agent for e in await site.bastion.services.users.list_audit()]
    assert "Agent\ufffd/1.0" in agents


async def test_nul_in_the_token_endpoint_user_name_is_invalid_grant(site: Site) -> None:
    await site.create_user("alice")
    async with site.client() as client:
        response = await client.post(
            "/api/token",
            data={"grant_type": "password", "username": "alice\x00", "password": PASSWORD},
        )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("field", "value"),
    [("username", "carol\x00"), ("username", "car\x07ol"), ("email", "carol\x00@example.org")],
)
async def test_control_character_in_a_registration_field_is_refused(
    open_site: Site, field: str, value: str
) -> None:
    form = {
        "username": "carol",
        "email": "carol@example.org",
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
        field: value,
    }
    async with open_site.client() as client:
        form["csrf_token"] = csrf_from((await client.get("/register")).text)
        response = await client.post("/register", data=form, headers=ORIGIN)

    assert response.status_code == 400
    assert "control characters" in alert(response)
    assert await open_site.bastion.services.users.count_users() == 0


async def test_nul_in_the_registration_password_is_kept_as_typed(open_site: Site) -> None:
    password = NEW_PASSWORD + "\x00"
    async with open_site.client() as client:
        page = await client.get("/register")
        form = {
            "csrf_token": csrf_from(page.text),
            "username": "carol",
            "password": password,
            "password_confirm": password,
        }
        registered = await client.post("/register", data=form, headers=ORIGIN)
    async with open_site.client() as client:
        without_nul = await login(client, "carol", NEW_PASSWORD)
        with_nul = await login(client, "carol", password)

    assert registered.status_code == 303
    assert without_nul.status_code == 400
    assert with_nul.status_code == 303


@pytest.mark.parametrize("query", ["q=%00", "q=ali%00ce", "q=%1b%5b2J", "q=%00&page=1"])
async def test_control_characters_in_the_admin_search_find_nobody(site: Site, query: str) -> None:
    await site.create_user("root", roles=("admin",))
    await site.create_user("alice")
    async with site.client() as client:
        await login(client, "root")
        response = await client.get(f"/admin/users?{query}")

    assert response.status_code == 200
    assert "alice" not in response.text


async def register(site: Site, username: str) -> httpx.Response:
    async with site.client() as client:
        page = await client.get("/register")
        form = {
            "csrf_token": csrf_from(page.text),
            "username": username,
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
        }
        return await client.post("/register", data=form, headers=ORIGIN)


@pytest.mark.parametrize(
    "look_alike",
    [
        "adm\u0131n",  # dotless i
        "ADM\u0130N",  # capital I with dot above
        "adrnin",  # "rn" for "m"
    ],
)
async def test_registering_a_look_alike_of_an_account_gets_the_duplicate_answer(
    open_site: Site, look_alike: str
) -> None:
    await open_site.create_user("admin")

    duplicate = await register(open_site, "Admin")
    refused = await register(open_site, look_alike)

    assert duplicate.status_code == refused.status_code == 400
    assert alert(refused) == alert(duplicate)
    assert await open_site.bastion.services.users.count_users() == 1


async def test_registering_a_name_that_mixes_scripts_is_refused(open_site: Site) -> None:
    refused = await register(open_site, "\u0430dmin")  # Cyrillic a

    assert refused.status_code == 400
    assert "scripts" in alert(refused)
    assert await open_site.bastion.services.users.count_users() == 0


def test_every_variant_names_its_database(make_settings: MakeSettings, database_kind: str) -> None:
    settings: Settings = make_settings()

    url = settings.resolved_database_url
    assert url.startswith(
        {"sqlite": "sqlite+aiosqlite://", "postgresql": "postgresql"}[database_kind]
    )
