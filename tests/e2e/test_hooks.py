"""Lifecycle hooks: each fires once, after its change is durable, and never breaks the
request that caused it.

Every hook here records its event together with what the database and the session store
held at the moment it ran: a hook that ran before the commit would see the old state.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio

from bastion.hooks import (
    AccountDeleted,
    AccountDisabled,
    Event,
    Hooks,
    PasswordChanged,
    Registered,
    SessionRevoked,
    SignedIn,
    SignedOut,
    SignInFailed,
)
from bastion.sessions import session_ref
from bastion.users.repository import UserRecord
from tests.e2e.conftest import ORIGIN, PASSWORD, MakeSettings, Site, csrf_token, login
from tests.e2e.own_app import own_app

E = TypeVar("E")
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "hooks_app.py"
NEW_PASSWORD = "a much better passphrase 42"
WRONG_PASSWORD = "not the password at all"
AGENT = {"User-Agent": "HookTest/1.0"}


@dataclass(frozen=True)
class Seen:
    """An event, and the user's row, live sessions and newest audit event when it ran."""

    event: Event
    user: UserRecord | None
    live_sessions: frozenset[str]
    last_audit: str | None


class Recorder:
    """Hooks that record what they are called with and what is stored at that moment."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.site: Site | None = None

    def hooks(self, **options: Any) -> Hooks:
        record = self.record
        return Hooks(
            on_registered=record,
            on_signed_in=record,
            on_sign_in_failed=record,
            on_signed_out=record,
            on_password_changed=record,
            on_account_disabled=record,
            on_account_deleted=record,
            on_session_revoked=record,
            **options,
        )

    async def record(self, event: Event) -> None:
        assert self.site is not None
        services = self.site.bastion.services
        user_id = event.user_id
        user = await services.users.get_by_id(user_id) if user_id is not None else None
        live = await services.sessions.list_for_user(user_id) if user_id is not None else []
        newest = await services.users.list_audit(0, 1)
        self.seen.append(
            Seen(event, user, frozenset(s.ref for s in live), newest[0].event if newest else None)
        )

    def of(self, kind: type[E]) -> list[tuple[E, Seen]]:
        return [(s.event, s) for s in self.seen if isinstance(s.event, kind)]

    def kinds(self) -> list[str]:
        return [type(s.event).__name__ for s in self.seen]


@pytest_asyncio.fixture
async def recorded(make_settings: MakeSettings) -> AsyncIterator[tuple[Site, Recorder]]:
    recorder = Recorder()
    settings = make_settings(registration="open")
    async with own_app(settings, hooks=recorder.hooks()) as site:
        recorder.site = site
        yield site, recorder


async def post_form(
    client: httpx.AsyncClient, path: str, data: dict[str, str], *, page: str = "/dashboard"
) -> httpx.Response:
    form = {"csrf_token": await csrf_token(client, page), **data}
    return await client.post(path, data=form, headers=ORIGIN)


async def token_grant(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    grant = {"grant_type": "password", "username": username, "password": password}
    return await client.post("/api/token", data=grant)


async def session_key(client: httpx.AsyncClient) -> str:
    """The id (store key) of the session this client is using."""
    sessions = (await client.get("/api/sessions")).json()
    return str(next(s["id"] for s in sessions if s["current"]))


async def test_registration_hook_sees_the_new_account(recorded: tuple[Site, Recorder]) -> None:
    site, recorder = recorded
    async with site.client(headers=AGENT) as client:
        form = {
            "username": "carol",
            "email": "carol@example.com",
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
        }
        assert (await post_form(client, "/register", form, page="/register")).status_code == 303
    # The session a registration starts is not a sign-in: one event only.
    assert recorder.kinds() == ["Registered"]
    [(event, seen)] = recorder.of(Registered)
    assert seen.user is not None
    assert event == Registered(
        user_id=seen.user.id,
        username="carol",
        email="carol@example.com",
        ip="203.0.113.7",
        user_agent="HookTest/1.0",
    )
    assert seen.last_audit == "user.registered"


async def test_sign_in_hooks_name_the_channel_and_method(recorded: tuple[Site, Recorder]) -> None:
    site, recorder = recorded
    alice_id = await site.create_user("alice")
    async with site.client(headers=AGENT) as client:
        assert (await login(client, "alice")).status_code == 303
        # A quick hook has run before the response: its event is already here.
        assert recorder.kinds() == ["SignedIn"]
        assert (await token_grant(client, "alice")).status_code == 200
    assert recorder.kinds() == ["SignedIn", "SignedIn"]
    (web, web_seen), (api, api_seen) = recorder.of(SignedIn)
    assert (web.channel, web.method) == ("web", "password")
    assert (api.channel, api.method) == ("api", "password")
    for event, seen in ((web, web_seen), (api, api_seen)):
        assert (event.user_id, event.username) == (alice_id, "alice")
        assert (event.ip, event.user_agent) == ("203.0.113.7", "HookTest/1.0")
        assert event.session_ref in seen.live_sessions
        assert seen.user is not None
        assert seen.user.last_login_at is not None
        assert seen.last_audit == "login.success"
    assert web.session_ref != api.session_ref


async def test_failed_sign_in_hook_gets_the_reason_never_the_password(
    recorded: tuple[Site, Recorder],
) -> None:
    site, recorder = recorded
    alice_id = await site.create_user("alice")
    bob_id = await site.create_user("bob")
    await site.bastion.services.users.set_active(bob_id, False)
    async with site.client(headers=AGENT) as client:
        assert (await login(client, "alice", WRONG_PASSWORD)).status_code == 400
        assert (await login(client, "nobody", WRONG_PASSWORD)).status_code == 400
        assert (await login(client, "bob")).status_code == 400
        assert (await token_grant(client, "alice", WRONG_PASSWORD)).status_code == 400
    failures = [event for event, _ in recorder.of(SignInFailed)]
    assert [(e.username, e.user_id, e.reason, e.channel) for e in failures] == [
        ("alice", alice_id, "password", "web"),
        ("nobody", None, "unknown user", "web"),
        ("bob", bob_id, "disabled", "web"),
        ("alice", alice_id, "password", "api"),
    ]
    assert all(e.method == "password" and e.user_agent == "HookTest/1.0" for e in failures)
    assert all(seen.last_audit == "login.failure" for _, seen in recorder.of(SignInFailed))
    assert all(WRONG_PASSWORD not in repr(e) and PASSWORD not in repr(e) for e in failures)
    assert recorder.kinds() == ["SignInFailed"] * 4


async def test_a_wrong_current_password_is_not_a_failed_sign_in(
    recorded: tuple[Site, Recorder],
) -> None:
    site, recorder = recorded
    await site.create_user("alice")
    async with site.client() as client:
        await login(client, "alice")
        form = {
            "current_password": WRONG_PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        }
        response = await post_form(client, "/account/password", form, page="/account/password")
        assert response.status_code == 400
    assert recorder.kinds() == ["SignedIn"]


async def test_sign_out_hook_runs_after_the_session_ended(recorded: tuple[Site, Recorder]) -> None:
    site, recorder = recorded
    alice_id = await site.create_user("alice")
    async with site.client(headers=AGENT) as client:
        await login(client, "alice")
        assert (await post_form(client, "/logout", {})).status_code == 303
    [(signed_in, _)] = recorder.of(SignedIn)
    [(event, seen)] = recorder.of(SignedOut)
    assert event == SignedOut(
        user_id=alice_id,
        username="alice",
        ip="203.0.113.7",
        user_agent="HookTest/1.0",
        session_ref=signed_in.session_ref,
    )
    assert seen.live_sessions == frozenset()
    assert seen.last_audit == "logout"


async def test_password_change_hook_sees_the_new_password_stored(
    recorded: tuple[Site, Recorder],
) -> None:
    site, recorder = recorded
    alice_id = await site.create_user("alice")
    async with site.client(headers=AGENT) as browser, site.client() as other:
        await login(browser, "alice")
        await login(other, "alice")
        form = {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        }
        response = await post_form(browser, "/account/password", form, page="/account/password")
        assert response.status_code == 200
    [(event, seen)] = recorder.of(PasswordChanged)
    assert event == PasswordChanged(
        user_id=alice_id,
        username="alice",
        actor_id=alice_id,
        ip="203.0.113.7",
        user_agent="HookTest/1.0",
        sessions_ended=1,
    )
    assert seen.user is not None
    ok, _ = await site.bastion.services.passwords.verify_async(
        NEW_PASSWORD, seen.user.password_hash
    )
    assert ok
    assert len(seen.live_sessions) == 1
    assert seen.last_audit == "password.changed"
    assert recorder.kinds() == ["SignedIn", "SignedIn", "PasswordChanged"]


async def test_admin_actions_reach_the_hooks_after_the_change(
    recorded: tuple[Site, Recorder],
) -> None:
    """An admin sets alice's password, disables her, then deletes her, from the pages."""
    site, recorder = recorded
    root_id = await site.create_user("root", roles=("admin",))
    alice_id = await site.create_user("alice")
    async with site.client(headers=AGENT) as admin, site.client() as alice:
        await login(admin, "root")
        await login(alice, "alice")
        users = "/admin/users"
        password = {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD}
        path = f"{users}/{alice_id}/password"
        assert (await post_form(admin, path, password, page=path)).status_code == 303
        [(changed, seen)] = recorder.of(PasswordChanged)
        assert (changed.actor_id, changed.sessions_ended) == (root_id, 1)
        assert seen.user is not None
        ok, _ = await site.bastion.services.passwords.verify_async(
            NEW_PASSWORD, seen.user.password_hash
        )
        assert ok

        await login(alice, "alice", NEW_PASSWORD)
        path = f"{users}/{alice_id}/active"
        assert (await post_form(admin, path, {"active": "0"}, page=users)).status_code == 303
        [(disabled, seen)] = recorder.of(AccountDisabled)
        assert disabled == AccountDisabled(
            user_id=alice_id,
            username="alice",
            actor_id=root_id,
            ip="203.0.113.7",
            user_agent="HookTest/1.0",
            sessions_ended=1,
        )
        assert seen.user is not None
        assert not seen.user.is_active
        assert seen.live_sessions == frozenset()
        assert seen.last_audit == "user.disabled"

        path = f"{users}/{alice_id}/delete"
        response = await post_form(admin, path, {"confirm": "alice"}, page=path)
        assert response.status_code == 303
    [(deleted, seen)] = recorder.of(AccountDeleted)
    assert deleted == AccountDeleted(
        user_id=alice_id,
        username="alice",
        actor_id=root_id,
        ip="203.0.113.7",
        user_agent="HookTest/1.0",
    )
    assert seen.user is None
    assert seen.last_audit == "user.deleted"
    assert recorder.kinds() == [
        "SignedIn",
        "SignedIn",
        "PasswordChanged",
        "SignedIn",
        "AccountDisabled",
        "AccountDeleted",
    ]


async def test_session_revoked_hook_fires_once_per_ended_session(
    recorded: tuple[Site, Recorder],
) -> None:
    site, recorder = recorded
    root_id = await site.create_user("root", roles=("admin",))
    alice_id = await site.create_user("alice")
    async with (
        site.client(headers=AGENT) as one,
        site.client() as two,
        site.client() as three,
        site.client() as four,
        site.client() as admin,
    ):
        for browser in (one, two, three, four):
            await login(browser, "alice")
        await login(admin, "root")
        refresh = (await token_grant(one, "alice")).json()["refresh_token"]
        one_key, two_key, four_key = [await session_key(b) for b in (one, two, four)]

        # The owner revokes a device, then the refresh token, then an admin one session.
        revoke = await post_form(one, f"/account/sessions/{two_key}/revoke", {})
        assert revoke.status_code == 303
        token_revoke = await one.post("/api/token/revoke", data={"token": refresh})
        assert token_revoke.status_code == 200
        admin_revoke = await post_form(
            admin, f"/admin/sessions/{four_key}/revoke", {}, page="/admin/sessions"
        )
        assert admin_revoke.status_code == 303
        others = [r for r, _ in recorder.of(SessionRevoked)]
        assert [(e.by, e.actor_id) for e in others] == [
            ("owner", alice_id),
            ("token", None),
            ("admin", root_id),
        ]
        assert others[0].session_ref == session_ref(two_key)
        assert others[2].session_ref == session_ref(four_key)
        # "Sign out everywhere else" ends the one session left besides this one (three's).
        assert (await post_form(one, "/account/sessions/revoke-others", {})).status_code == 303

    revoked = recorder.of(SessionRevoked)
    assert len(revoked) == 4
    assert [e.by for e, _ in revoked] == ["owner", "token", "admin", "owner"]
    assert all(e.user_id == alice_id and e.username == "alice" for e, _ in revoked)
    assert all(e.session_ref not in seen.live_sessions for e, seen in revoked)
    assert session_ref(one_key) in revoked[-1][1].live_sessions
    assert revoked[0][0].user_agent == "HookTest/1.0"
    refs = [e.session_ref for e, _ in revoked]
    assert len(set(refs)) == 4
    assert all(seen.last_audit == "session.revoked" for _, seen in revoked)


async def test_a_failing_hook_is_logged_and_never_breaks_the_request(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(event: Event) -> None:
        raise RuntimeError("the application's bug")

    hooks = Hooks(on_signed_in=broken, on_sign_in_failed=broken, on_signed_out=broken)
    async with own_app(make_settings(), hooks=hooks) as site:
        await site.create_user("alice")
        with caplog.at_level(logging.ERROR, logger="bastion.hooks"):
            async with site.client() as client:
                assert (await login(client, "alice", WRONG_PASSWORD)).status_code == 400
                response = await login(client, "alice")
                assert response.status_code == 303
                assert response.headers["location"] == "/dashboard"
                assert (await client.get("/dashboard")).status_code == 200
                assert (await token_grant(client, "alice")).status_code == 200
                assert (await post_form(client, "/logout", {})).status_code == 303
    failures = [r for r in caplog.records if r.name == "bastion.hooks"]
    assert [r.getMessage() for r in failures] == [
        "hook on_sign_in_failed failed",
        "hook on_signed_in failed",
        "hook on_signed_in failed",
        "hook on_signed_out failed",
    ]
    assert all(r.exc_info is not None for r in failures)


async def test_a_slow_hook_does_not_hold_up_the_response(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow(event: SignedIn) -> None:
        started.set()
        await release.wait()
        finished.set()

    async with own_app(make_settings(), hooks=Hooks(on_signed_in=slow, timeout=0.05)) as site:
        await site.create_user("alice")
        # Should the response wait for the hook after all, this frees it: the test then
        # fails on the assertion below instead of hanging.
        asyncio.get_running_loop().call_later(10, release.set)
        async with site.client() as client:
            response = await login(client, "alice")
            assert response.status_code == 303
            assert started.is_set()
            assert not finished.is_set()
            assert (await client.get("/dashboard")).status_code == 200
        # The hook was not cancelled: it finishes once it can.
        release.set()
        await finished.wait()
    assert any(
        r.name == "bastion.hooks" and "still running" in r.getMessage() for r in caplog.records
    )


async def test_the_docs_example_hears_sign_ups_and_sign_ins(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    spec = importlib.util.spec_from_file_location("hooks_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    app = example.create_app(make_settings(registration="open"))
    caplog.set_level(logging.INFO, logger="myapp")
    async with app.router.lifespan_context(app):
        site = Site(app, app.state.bastion)
        async with site.client() as client:
            form = {
                "username": "carol",
                "password": NEW_PASSWORD,
                "password_confirm": NEW_PASSWORD,
            }
            assert (await post_form(client, "/register", form, page="/register")).status_code == 303
            assert (await login(client, "carol", WRONG_PASSWORD)).status_code == 400
            assert (await login(client, "carol", NEW_PASSWORD)).status_code == 303
    assert example.recent_sign_ins == ["carol via web/password"]
    messages = [r.getMessage() for r in caplog.records if r.name == "myapp"]
    assert messages[0].startswith("new account carol (id ")
    assert messages[1] == "sign-in refused for 'carol' from 203.0.113.7: password"
