"""An administrator removes the second factors of a user who lost them: audited with the
admin's name, the user's sessions end, and the password alone signs them in again."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import ORIGIN, Site, assert_refused, csrf_token, login
from tests.e2e.test_totp_pages import enrol


async def alice_with_totp(site: Site) -> int:
    """alice, signed in on a client of her own that enrolled TOTP (still signed in)."""
    alice_id = await site.create_user("alice")
    async with site.client() as alice:
        await login(alice, "alice")
        await enrol(alice)
    return alice_id


async def reset(
    admin: httpx.AsyncClient, user_id: int, confirm: str | None = None
) -> httpx.Response:
    form = {"csrf_token": await csrf_token(admin, f"/admin/users/{user_id}/mfa")}
    if confirm is not None:
        form["confirm"] = confirm
    return await admin.post(f"/admin/users/{user_id}/mfa/reset", data=form, headers=ORIGIN)


async def test_admin_page_shows_the_users_factors(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("root", roles=("admin",))
    alice_id = await alice_with_totp(site)
    await login(client, "root")

    users = await client.get("/admin/users")
    page = await client.get(f"/admin/users/{alice_id}/mfa")

    assert f'href="/admin/users/{alice_id}/mfa"' in users.text
    assert page.status_code == 200
    assert '<dd id="mfa-totp"><span class="badge current">on</span></dd>' in page.text
    assert '<dd id="mfa-recovery-codes">10</dd>' in page.text
    assert f'action="/admin/users/{alice_id}/mfa/reset"' in page.text


async def test_admin_removes_the_factors_and_ends_the_users_sessions(site: Site) -> None:
    root_id = await site.create_user("root", roles=("admin",))
    alice_id = await site.create_user("alice")
    async with site.client() as admin, site.client() as alice:
        await login(alice, "alice")
        await enrol(alice)
        await login(admin, "root")

        answer = await reset(admin, alice_id, confirm="alice")

        assert answer.status_code == 303
        assert answer.headers["location"] == "/admin/users?done=mfa-reset"
        assert "second factors were removed" in (await admin.get(answer.headers["location"])).text
        assert (await alice.get("/dashboard")).status_code == 303  # her session ended
    summary = await site.bastion.services.mfa.summary(alice_id)
    assert (summary.totp, summary.passkeys, summary.recovery_codes_left) == (False, 0, 0)
    [event] = [
        e for e in await site.bastion.services.users.list_audit(user_id=alice_id)
        if e.event == "mfa.reset"
    ]  # fmt: skip
    assert event.actor_id == root_id
    assert event.detail is not None
    assert event.detail["by"] == "admin"
    assert event.detail["totp"] is True
    # The password alone signs her in again, straight to the dashboard.
    async with site.client() as again:
        signed_in = await login(again, "alice")
        assert signed_in.status_code == 303
        assert (await again.get("/dashboard")).status_code == 200


async def test_reset_without_the_pages_confirmation_removes_nothing(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("root", roles=("admin",))
    alice_id = await alice_with_totp(site)
    await login(client, "root")

    for confirm in (None, "bob"):
        answer = await reset(client, alice_id, confirm=confirm)
        assert answer.status_code == 400
        assert "Confirm the removal" in answer.text
    assert (await site.bastion.services.mfa.summary(alice_id)).totp is True


async def test_admin_cannot_reset_their_own_factors_here(
    site: Site, client: httpx.AsyncClient
) -> None:
    root_id = await site.create_user("root", roles=("admin",))
    await login(client, "root")
    await enrol(client)

    page = await client.get(f"/admin/users/{root_id}/mfa")
    answer = await reset(client, root_id, confirm="root")

    assert page.status_code == 400
    assert f'action="/admin/users/{root_id}/mfa/reset"' not in page.text
    assert answer.status_code == 400
    assert "your Security page" in answer.text
    assert (await site.bastion.services.mfa.summary(root_id)).totp is True
    assert (await client.get("/dashboard")).status_code == 200


async def test_reset_is_for_admins_only(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("bob")
    alice_id = await alice_with_totp(site)
    await login(client, "bob")

    page = await client.get(f"/admin/users/{alice_id}/mfa")
    answer = await client.post(
        f"/admin/users/{alice_id}/mfa/reset",
        data={"csrf_token": await csrf_token(client), "confirm": "alice"},
        headers=ORIGIN,
    )

    assert page.status_code == 403
    assert answer.status_code == 403
    assert (await site.bastion.services.mfa.summary(alice_id)).totp is True


async def test_reset_needs_a_csrf_token(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("root", roles=("admin",))
    alice_id = await alice_with_totp(site)
    await login(client, "root")

    refused = await client.post(
        f"/admin/users/{alice_id}/mfa/reset", data={"confirm": "alice"}, headers=ORIGIN
    )

    assert_refused(refused)
    assert (await site.bastion.services.mfa.summary(alice_id)).totp is True


async def test_reset_of_an_unknown_user_is_404(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("root", roles=("admin",))
    await login(client, "root")

    assert (await client.get("/admin/users/4242/mfa")).status_code == 404
    answer = await client.post(
        "/admin/users/4242/mfa/reset",
        data={"csrf_token": await csrf_token(client), "confirm": "x"},
        headers=ORIGIN,
    )
    assert answer.status_code == 404
