"""Idle and absolute timeouts on pages, API and refresh, with short real settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bastion.settings import Settings
from tests.e2e.conftest import PASSWORD, login


async def test_idle_timeout_ends_browser_sessions(
    site_factory: Any, make_settings: Callable[..., Settings]
) -> None:
    site = await site_factory(
        make_settings(session_idle_timeout=1, session_absolute_timeout=60, session_touch_interval=0)
    )
    await site.create_user("alice")
    async with site.client() as client:
        await login(client, "alice")
        assert (await client.get("/dashboard")).status_code == 200
        await asyncio.sleep(1.3)
        assert (await client.get("/dashboard")).status_code == 303
        assert (await client.get("/api/me")).status_code == 401


async def test_activity_keeps_a_session_alive_until_its_absolute_end(
    site_factory: Any, make_settings: Callable[..., Settings]
) -> None:
    site = await site_factory(
        make_settings(session_idle_timeout=2, session_absolute_timeout=3, session_touch_interval=0)
    )
    await site.create_user("alice")
    async with site.client() as client:
        await login(client, "alice")
        for _ in range(3):
            await asyncio.sleep(0.8)
            assert (await client.get("/dashboard")).status_code == 200
        await asyncio.sleep(1.0)  # past the 3 s absolute end, though never idle for 2 s
        assert (await client.get("/dashboard")).status_code == 303


async def test_idle_api_session_refuses_access_and_refresh_tokens(
    site_factory: Any, make_settings: Callable[..., Settings]
) -> None:
    site = await site_factory(
        make_settings(
            session_idle_timeout=1,
            session_absolute_timeout=60,
            refresh_token_ttl=1,
            session_touch_interval=0,
        )
    )
    await site.create_user("alice")
    async with site.client() as client:
        grant = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        tokens = (await client.post("/api/token", data=grant)).json()
        await asyncio.sleep(1.3)
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await client.get("/api/me", headers=bearer)).status_code == 401
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        assert (await client.post("/api/token", data=refresh)).status_code == 400


async def test_remember_me_gets_the_longer_absolute_timeout(
    site_factory: Any, make_settings: Callable[..., Settings]
) -> None:
    site = await site_factory(
        make_settings(
            session_idle_timeout=2,
            session_absolute_timeout=2,
            remember_me_timeout=60,
            session_touch_interval=0,
        )
    )
    await site.create_user("alice")
    async with site.client() as plain, site.client() as remembered:
        await login(plain, "alice")
        await login(remembered, "alice", remember=True)
        for _ in range(3):
            await asyncio.sleep(0.8)
            await plain.get("/dashboard")
            await remembered.get("/dashboard")
        assert (await plain.get("/dashboard")).status_code == 303
        assert (await remembered.get("/dashboard")).status_code == 200


async def test_max_sessions_per_user_ends_the_oldest(
    site_factory: Any, make_settings: Callable[..., Settings]
) -> None:
    site = await site_factory(make_settings(max_sessions_per_user=2))
    await site.create_user("alice")
    async with site.client() as one, site.client() as two, site.client() as three:
        await login(one, "alice")
        await asyncio.sleep(0.01)
        await login(two, "alice")
        await asyncio.sleep(0.01)
        await login(three, "alice")
        assert (await one.get("/dashboard")).status_code == 303
        assert (await two.get("/dashboard")).status_code == 200
        assert (await three.get("/dashboard")).status_code == 200
