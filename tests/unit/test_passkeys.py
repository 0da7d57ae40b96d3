"""bastion.mfa.passkeys against a software authenticator: registration, sign-in, use as a
second factor, and every check a ceremony goes through (challenge, browser, user, origin,
RP id, user handle, user verification, sign count)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from bastion.audit import AuditTrail
from bastion.clock import FakeClock
from bastion.db import create_engine
from bastion.exceptions import StoreUnavailable, UserError
from bastion.mfa.passkey_repository import PasskeyRepository
from bastion.mfa.passkeys import (
    MAX_PASSKEYS,
    USER_HANDLE_BYTES,
    ClonedPasskey,
    PasskeyRefused,
    Passkeys,
    RelyingParty,
    TooManyPasskeys,
    clean_passkey_name,
    relying_party,
)
from bastion.migrate import upgrade
from bastion.settings import Settings
from bastion.stores.memory import MemoryStore
from bastion.users.repository import UserRecord, UserRepository
from tests.soft_authenticator import SoftAuthenticator

ORIGIN = "https://bastion.example"
RP = RelyingParty(id="bastion.example", name="Bastion", origin=ORIGIN)
BROWSER = "csrf secret of the browser"


@dataclass
class World:
    users: UserRepository
    passkeys: Passkeys
    clock: FakeClock
    alice: UserRecord
    bob: UserRecord

    async def events(self, user_id: int) -> list[str]:
        return [e.event for e in await self.users.list_audit(user_id=user_id)]

    async def enrol(
        self, user: UserRecord, device: SoftAuthenticator, name: str = "Laptop"
    ) -> None:
        options = await self.passkeys.registration_options(user, RP, BROWSER)
        await self.passkeys.register(user, device.create(options), name, RP, BROWSER)

    async def sign_in(self, device: SoftAuthenticator) -> UserRecord:
        options = await self.passkeys.authentication_options(RP, BROWSER)
        use = await self.passkeys.sign_in(device.get(options), RP, BROWSER)
        return use.user


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"
    await upgrade(url)
    engine = create_engine(url)
    clock = FakeClock()
    users = UserRepository(engine, clock=clock)
    passkeys = Passkeys(
        PasskeyRepository(users), users, MemoryStore(clock=clock), AuditTrail(users)
    )
    alice = await users.create_user("alice", "x")
    bob = await users.create_user("bob", "x")
    try:
        yield World(users, passkeys, clock, alice, bob)
    finally:
        await engine.dispose()


async def test_registered_passkey_signs_its_user_in_without_a_password(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device, "Work laptop")

    (passkey,) = await world.passkeys.list_for_user(world.alice.id)
    assert passkey.name == "Work laptop"
    assert passkey.transports == ("internal",)
    assert "mfa.passkey.registered" in await world.events(world.alice.id)

    options = await world.passkeys.authentication_options(RP, BROWSER)
    assert options["publicKey"]["allowCredentials"] == []
    assert options["publicKey"]["userVerification"] == "required"
    use = await world.passkeys.sign_in(device.get(options), RP, BROWSER)
    assert use.user.id == world.alice.id
    assert use.methods == ("hwk", "user", "mfa")
    (used,) = await world.passkeys.list_for_user(world.alice.id)
    assert used.sign_count == 1
    assert used.last_used_at is not None


async def test_creation_options_require_a_discoverable_verified_credential(world: World) -> None:
    options = await world.passkeys.registration_options(world.alice, RP, BROWSER)
    public_key = options["publicKey"]
    assert public_key["rp"] == {"name": "Bastion", "id": "bastion.example"}
    assert public_key["authenticatorSelection"]["residentKey"] == "required"
    assert public_key["authenticatorSelection"]["userVerification"] == "required"
    assert public_key["user"]["name"] == "alice"
    assert len(base64url_to_bytes(public_key["user"]["id"])) == USER_HANDLE_BYTES
    assert public_key["excludeCredentials"] == []


async def test_user_handle_is_made_once_and_existing_passkeys_are_excluded(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    options = await world.passkeys.registration_options(world.alice, RP, BROWSER)
    handle = await world.passkeys.repository.user_handle(world.alice.id)
    assert options["publicKey"]["user"]["id"] == handle
    assert [c["id"] for c in options["publicKey"]["excludeCredentials"]] == [
        bytes_to_base64url(device.only().credential_id)
    ]
    other = await world.passkeys.registration_options(world.bob, RP, BROWSER)
    assert other["publicKey"]["user"]["id"] != handle


async def test_second_factor_options_list_the_users_passkeys_and_refuse_another_users(
    world: World,
) -> None:
    alices, bobs = SoftAuthenticator(ORIGIN), SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, alices)
    await world.enrol(world.bob, bobs)
    options = await world.passkeys.authentication_options(
        RP, BROWSER, purpose="second-factor", user_id=world.alice.id
    )
    assert [c["id"] for c in options["publicKey"]["allowCredentials"]] == [
        bytes_to_base64url(alices.only().credential_id)
    ]
    use = await world.passkeys.verify(
        world.alice.id, alices.get(options), RP, BROWSER, purpose="second-factor"
    )
    assert use.user.id == world.alice.id

    options = await world.passkeys.authentication_options(
        RP, BROWSER, purpose="second-factor", user_id=world.alice.id
    )
    with pytest.raises(PasskeyRefused, match="another user"):
        await world.passkeys.verify(
            world.alice.id, bobs.get(options, bobs.only()), RP, BROWSER, purpose="second-factor"
        )


async def test_second_factor_options_refuse_a_user_without_passkeys(world: World) -> None:
    with pytest.raises(PasskeyRefused):
        await world.passkeys.authentication_options(
            RP, BROWSER, purpose="second-factor", user_id=world.bob.id
        )


async def test_challenge_is_single_use(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    options = await world.passkeys.authentication_options(RP, BROWSER)
    answer = device.get(options)
    await world.passkeys.sign_in(answer, RP, BROWSER)
    with pytest.raises(PasskeyRefused, match="unknown, used or expired challenge"):
        await world.passkeys.sign_in(answer, RP, BROWSER)


async def test_challenge_expires_after_five_minutes(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    options = await world.passkeys.authentication_options(RP, BROWSER)
    world.clock.advance(301)
    with pytest.raises(PasskeyRefused, match="expired"):
        await world.passkeys.sign_in(device.get(options), RP, BROWSER)


async def test_challenge_of_another_browser_is_refused_and_spent(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    options = await world.passkeys.authentication_options(RP, BROWSER)
    answer = device.get(options)
    with pytest.raises(PasskeyRefused, match="another browser"):
        await world.passkeys.sign_in(answer, RP, "another browser's secret")
    with pytest.raises(PasskeyRefused, match="used"):
        await world.passkeys.sign_in(answer, RP, BROWSER)


async def test_challenge_of_another_purpose_or_user_is_refused(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    sign_in = await world.passkeys.authentication_options(RP, BROWSER)
    with pytest.raises(PasskeyRefused, match="another purpose"):
        await world.passkeys.verify(
            world.alice.id, device.get(sign_in), RP, BROWSER, purpose="reauth"
        )
    registration = await world.passkeys.registration_options(world.bob, RP, BROWSER)
    with pytest.raises(PasskeyRefused, match="another user"):
        await world.passkeys.register(
            world.alice, SoftAuthenticator(ORIGIN).create(registration), "x", RP, BROWSER
        )


async def test_another_origin_or_rp_id_is_refused(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    phishing = SoftAuthenticator("https://bastion.example.evil")
    phishing.credentials = device.credentials
    options = await world.passkeys.authentication_options(RP, BROWSER)
    with pytest.raises(PasskeyRefused, match="origin"):
        await world.passkeys.sign_in(phishing.get(options), RP, BROWSER)

    assert "login.failure" in await world.events(world.alice.id)

    other_rp = RelyingParty(id="example", name="x", origin=ORIGIN)
    options = await world.passkeys.authentication_options(other_rp, BROWSER)
    with pytest.raises(PasskeyRefused, match="RP ID"):
        await world.passkeys.sign_in(device.get(options), RP, BROWSER)


async def test_registration_without_user_verification_is_refused(world: World) -> None:
    options = await world.passkeys.registration_options(world.alice, RP, BROWSER)
    unverified = SoftAuthenticator(ORIGIN, user_verified=False)
    with pytest.raises(PasskeyRefused, match="verif"):
        await world.passkeys.register(world.alice, unverified.create(options), "x", RP, BROWSER)
    assert await world.passkeys.count(world.alice.id) == 0


async def test_non_discoverable_credential_is_refused(world: World) -> None:
    options = await world.passkeys.registration_options(world.alice, RP, BROWSER)
    answer = SoftAuthenticator(ORIGIN).create(options)
    answer["clientExtensionResults"] = {"credProps": {"rk": False}}
    with pytest.raises(PasskeyRefused, match="not discoverable"):
        await world.passkeys.register(world.alice, answer, "x", RP, BROWSER)


async def test_user_handle_must_match_the_credentials_user(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    options = await world.passkeys.authentication_options(RP, BROWSER)
    answer = device.get(options)
    answer["response"]["userHandle"] = bytes_to_base64url(b"\x01" * USER_HANDLE_BYTES)
    with pytest.raises(PasskeyRefused, match="user handle"):
        await world.passkeys.sign_in(answer, RP, BROWSER)

    options = await world.passkeys.authentication_options(RP, BROWSER)
    answer = device.get(options)
    del answer["response"]["userHandle"]
    with pytest.raises(PasskeyRefused, match="user handle"):
        await world.passkeys.sign_in(answer, RP, BROWSER)


async def test_cloned_authenticator_is_refused_and_audited(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    assert (await world.sign_in(device)).id == world.alice.id
    assert (await world.sign_in(device)).id == world.alice.id  # the counter is now 2

    clone = SoftAuthenticator(ORIGIN)
    copied = device.only().copy(sign_count=0)
    clone.credentials[copied.credential_id] = copied
    with pytest.raises(ClonedPasskey):
        await world.sign_in(clone)  # signs with 1
    assert "mfa.passkey.clone_suspected" in await world.events(world.alice.id)
    (record,) = await world.passkeys.list_for_user(world.alice.id)
    assert record.sign_count == 2


async def test_forged_signature_is_no_clone_alarm(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    await world.sign_in(device)
    options = await world.passkeys.authentication_options(RP, BROWSER)
    device.only().sign_count = 0  # a lower counter, but the signature is not the key's
    answer = device.get(options)
    answer["response"]["signature"] = bytes_to_base64url(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    with pytest.raises(PasskeyRefused, match="signature") as refused:
        await world.passkeys.sign_in(answer, RP, BROWSER)
    assert not isinstance(refused.value, ClonedPasskey)
    assert "mfa.passkey.clone_suspected" not in await world.events(world.alice.id)


async def test_authenticator_without_a_counter_keeps_working(world: World) -> None:
    device = SoftAuthenticator(ORIGIN, counter_step=0)
    await world.enrol(world.alice, device)
    assert (await world.sign_in(device)).id == world.alice.id
    assert (await world.sign_in(device)).id == world.alice.id


async def test_disabled_user_cannot_sign_in_with_a_passkey(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    await world.users.set_active(world.alice.id, False)
    with pytest.raises(PasskeyRefused, match="disabled"):
        await world.sign_in(device)
    assert "login.failure" in await world.events(world.alice.id)


async def test_same_credential_cannot_be_registered_twice(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    options = await world.passkeys.registration_options(world.bob, RP, BROWSER)
    # Another authenticator answering with the first one's credential id.
    answer = SoftAuthenticator(ORIGIN).create(options, device.only().credential_id)
    with pytest.raises(PasskeyRefused, match="registered already"):
        await world.passkeys.register(world.bob, answer, "x", RP, BROWSER)


async def test_rename_and_remove_touch_only_the_owners_passkeys(world: World) -> None:
    device = SoftAuthenticator(ORIGIN)
    await world.enrol(world.alice, device)
    (passkey,) = await world.passkeys.list_for_user(world.alice.id)
    assert not await world.passkeys.rename(world.bob, passkey.id, "mine now")
    assert not await world.passkeys.remove(world.bob, passkey.id)
    assert await world.passkeys.rename(world.alice, passkey.id, "  Phone\u202e \n ")
    (renamed,) = await world.passkeys.list_for_user(world.alice.id)
    assert renamed.name == "Phone"
    with pytest.raises(UserError):
        await world.passkeys.rename(world.alice, passkey.id, " \t ")
    assert await world.passkeys.remove(world.alice, passkey.id)
    assert await world.passkeys.count(world.alice.id) == 0
    events = await world.events(world.alice.id)
    assert {"mfa.passkey.renamed", "mfa.passkey.removed"} <= set(events)
    with pytest.raises(PasskeyRefused, match="unknown credential"):
        await world.sign_in(device)


async def test_an_account_holds_a_bounded_number_of_passkeys(world: World) -> None:
    for _ in range(MAX_PASSKEYS):
        await world.enrol(world.alice, SoftAuthenticator(ORIGIN), "")
    names = [p.name for p in await world.passkeys.list_for_user(world.alice.id)]
    assert names[:2] == ["Passkey 1", "Passkey 2"]
    with pytest.raises(TooManyPasskeys):
        await world.passkeys.registration_options(world.alice, RP, BROWSER)


@pytest.mark.parametrize(
    ("credential", "reason"),
    [("not an object", "malformed"), ({}, "malformed"), ({"id": 1}, "malformed")],
)
async def test_malformed_answers_are_refused(world: World, credential: object, reason: str) -> None:
    with pytest.raises(PasskeyRefused, match=reason):
        await world.passkeys.sign_in(credential, RP, BROWSER)


def test_passkey_names_are_one_line_and_bounded() -> None:
    assert clean_passkey_name("a\x00b\u202ec  d") == "a b c d"
    assert len(clean_passkey_name("x" * 500)) == 100


def test_relying_party_comes_from_the_public_url_or_the_request_in_development() -> None:
    public = Settings(public_url="https://login.example.com", site_name="Example")
    assert relying_party(public, "http://127.0.0.1:8000") == RelyingParty(
        "login.example.com", "Example", "https://login.example.com"
    )
    parent = Settings(public_url="https://login.example.com", webauthn_rp_id="example.com")
    assert relying_party(parent, "http://x").id == "example.com"
    development = Settings()
    assert relying_party(development, "http://localhost:8000/") == RelyingParty(
        "localhost", "Bastion", "http://localhost:8000"
    )


def test_relying_party_refuses_what_browsers_would() -> None:
    unrelated = Settings(public_url="https://login.example.com", webauthn_rp_id="other.com")
    with pytest.raises(StoreUnavailable):
        relying_party(unrelated, "http://x")
    production = Settings(
        env="production", secret_key="s" * 10 + "0123456789abcdefghijklmnopqrstuv"
    )
    with pytest.raises(StoreUnavailable):
        relying_party(production, "https://attacker.example")
