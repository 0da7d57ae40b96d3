"""Who an external identity is here, on real SQLite and PostgreSQL databases: the linked
user, a new account, or (only with a verified, trusted address) an existing one; never an
account taken over by an address alone; and unlinking never strands an account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from sqlalchemy import insert

from bastion.accounts import Accounts
from bastion.audit import AuditTrail
from bastion.clock import FakeClock, to_datetime
from bastion.federation.config import ProviderConfig
from bastion.federation.errors import (
    FederationError,
    IdentityTaken,
    LastSignInMethod,
    LinkNeedsPassword,
    SignInRefused,
)
from bastion.federation.flow import ExternalProfile
from bastion.federation.service import Federation
from bastion.mfa.models import Passkey
from bastion.passwords import Passwords, has_usable_password
from bastion.sessions import SessionManager
from bastion.stores.memory import MemoryStore
from bastion.users.repository import UserRecord, UserRepository
from tests.oidc_standin import CLIENT_ID, CLIENT_SECRET, standin_issuer

HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


def provider(name: str = "corp", *, trust_email: bool = False) -> ProviderConfig:
    return ProviderConfig(
        name=name,
        kind="oidc",
        issuer=f"https://{name}.example.com",
        client_id="client",
        client_secret="secret",
        label=name,
        trust_email=trust_email,
    )


def profile(
    subject: str = "s-1",
    email: str | None = "jane@example.org",
    *,
    verified: bool = True,
    name: str = "corp",
    hint: str | None = "jane",
) -> ExternalProfile:
    return ExternalProfile(
        provider=name,
        issuer=f"https://{name}.example.com",
        subject=subject,
        email=email,
        email_verified=verified,
        username_hint=hint,
    )


@pytest.fixture
async def federation(repo: UserRepository, clock: FakeClock) -> AsyncIterator[Federation]:
    sessions = SessionManager(MemoryStore(clock=clock), clock=clock)
    accounts = Accounts(repo, sessions, Passwords(), AuditTrail(repo))
    service = Federation(
        {"corp": provider(), "trusting": provider("trusting", trust_email=True)},
        session_store=MemoryStore(clock=clock),
        users=repo,
        accounts=accounts,
        audit=accounts.audit,
        clock=clock,
    )
    yield service
    await service.aclose()


async def events(repo: UserRepository) -> list[str]:
    return [record.event for record in reversed(await repo.list_audit(limit=100))]


async def verified_user(repo: UserRepository, name: str, email: str) -> UserRecord:
    user = await repo.create_user(name, HASH, email=email)
    assert await repo.mark_email_verified(user.id, email)
    return user


async def test_a_first_sign_in_makes_an_account_without_a_password_and_the_next_finds_it(
    federation: Federation, repo: UserRepository
) -> None:
    first = await federation.resolve(profile(), registration_open=True, ip="192.0.2.1")
    assert first.outcome == "created"
    user = first.user
    assert user.username == "jane"
    assert user.email == "jane@example.org"
    assert user.email_verified
    assert not has_usable_password(user.password_hash)
    assert not (await Passwords().verify_async("", user.password_hash)).ok
    again = await federation.resolve(profile(), registration_open=False)
    assert (again.outcome, again.user.id) == ("existing", user.id)
    assert await events(repo) == ["federation.account_created", "federation.login"]


async def test_an_unverified_address_is_not_stored_on_a_new_account(
    federation: Federation,
) -> None:
    created = await federation.resolve(profile(verified=False), registration_open=True)
    assert created.user.email is None


async def test_a_taken_name_gets_a_free_one(federation: Federation, repo: UserRepository) -> None:
    await repo.create_user("jane", HASH)
    await repo.create_user("jane2", HASH)
    created = await federation.resolve(profile(email=None), registration_open=True)
    assert created.user.username == "jane3"


@pytest.mark.parametrize(
    ("hint", "email", "expected"),
    [
        ("Jane Doe", None, "Jane-Doe"),
        (None, "j.o'hara@example.org", "j.o-hara"),
        ("  ", None, "user"),
        ("\u202eevil", None, "evil"),
    ],
)
async def test_the_name_is_made_from_the_claims_and_always_valid(
    federation: Federation, hint: str | None, email: str | None, expected: str
) -> None:
    created = await federation.resolve(
        profile(email=email, verified=False, hint=hint), registration_open=True
    )
    assert created.user.username == expected


async def test_with_registration_closed_an_unknown_identity_gets_no_account(
    federation: Federation, repo: UserRepository
) -> None:
    with pytest.raises(SignInRefused, match="registration_closed"):
        await federation.resolve(profile(), registration_open=False)
    assert await repo.count_users() == 0


async def test_an_unverified_address_never_takes_over_the_account_that_has_it(
    federation: Federation, repo: UserRepository
) -> None:
    jane = await verified_user(repo, "jane", "jane@example.org")
    unverified = profile(verified=False, name="trusting")
    with pytest.raises(LinkNeedsPassword):
        await federation.resolve(unverified, registration_open=True)
    assert await federation.identities_of(jane.id) == []
    assert await repo.count_users() == 1


async def test_a_verified_address_links_only_when_the_provider_is_trusted(
    federation: Federation, repo: UserRepository
) -> None:
    jane = await verified_user(repo, "jane", "jane@example.org")
    with pytest.raises(LinkNeedsPassword):
        await federation.resolve(profile(), registration_open=True)
    linked = await federation.resolve(profile(name="trusting"), registration_open=True)
    assert (linked.outcome, linked.user.id) == ("linked", jane.id)
    assert "federation.linked" in await events(repo)


async def test_a_trusted_address_does_not_link_an_account_whose_own_address_is_unverified(
    federation: Federation, repo: UserRepository
) -> None:
    await repo.create_user("squatter", HASH, email="jane@example.org")
    with pytest.raises(LinkNeedsPassword):
        await federation.resolve(profile(name="trusting"), registration_open=True)


async def test_a_disabled_user_is_refused(federation: Federation, repo: UserRepository) -> None:
    user = (await federation.resolve(profile(), registration_open=True)).user
    await repo.set_active(user.id, False)
    with pytest.raises(SignInRefused, match="disabled"):
        await federation.resolve(profile(), registration_open=True)
    assert (await events(repo))[-1] == "federation.failure"


async def test_linking_an_identity_of_another_user_is_refused(
    federation: Federation, repo: UserRepository
) -> None:
    await federation.resolve(profile(), registration_open=True)
    bob = await repo.create_user("bob", HASH)
    with pytest.raises(IdentityTaken):
        await federation.link(bob.id, profile())
    linked = await federation.link(bob.id, profile("s-2"))
    assert linked.user_id == bob.id
    with pytest.raises(IdentityTaken):
        await federation.link(bob.id, profile("s-3"))  # one identity per provider


async def test_unlinking_the_last_way_to_sign_in_is_refused(
    federation: Federation, repo: UserRepository, clock: FakeClock
) -> None:
    user = (await federation.resolve(profile(), registration_open=True)).user
    with pytest.raises(LastSignInMethod):
        await federation.unlink(user.id, "corp")
    # A second provider is another way in: the first can go, the last cannot.
    await federation.link(user.id, profile(name="trusting"))
    assert await federation.unlink(user.id, "corp")
    with pytest.raises(LastSignInMethod):
        await federation.unlink(user.id, "trusting")
    # So is a passkey.
    async with repo.engine.begin() as connection:
        await connection.execute(
            insert(Passkey).values(
                user_id=user.id,
                credential_id="cred",
                public_key=b"key",
                sign_count=0,
                name="key",
                transports="[]",
                backup_eligible=False,
                backed_up=False,
                created_at=to_datetime(clock()),
            )
        )
    assert await federation.unlink(user.id, "trusting")
    assert await federation.identities_of(user.id) == []
    assert not await federation.unlink(user.id, "trusting")  # nothing left to remove


async def test_a_user_with_a_password_may_unlink_the_only_provider(
    federation: Federation, repo: UserRepository
) -> None:
    bob = await repo.create_user("bob", HASH)
    await federation.link(bob.id, profile())
    assert await federation.unlink(bob.id, "corp")
    assert (await events(repo))[-1] == "federation.unlinked"


async def test_a_sign_in_through_the_stand_in_provider_ends_in_an_account_and_failures_are_audited(
    repo: UserRepository, clock: FakeClock
) -> None:
    with standin_issuer() as issuer:
        corp = ProviderConfig(
            name="corp",
            kind="oidc",
            issuer=issuer.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            label="Corp",
        )
        accounts = Accounts(
            repo, SessionManager(MemoryStore(), clock=clock), Passwords(), AuditTrail(repo)
        )
        # The system clock: the stand-in's ID tokens carry the real time.
        service = Federation(
            {"corp": corp}, session_store=MemoryStore(), users=repo, accounts=accounts,
            audit=accounts.audit, timeout=2.0,
        )  # fmt: skip
        try:
            redirect = "http://testserver/login/oauth/corp/callback"
            url = await service.begin("corp", binding="b", redirect_uri=redirect, next="/")
            async with httpx.AsyncClient() as browser:
                back = (await browser.get(url)).headers["location"]
            params = dict(parse_qsl(urlsplit(back).query))
            callback = await service.complete(
                "corp", binding="b", params=params, redirect_uri=redirect
            )
            resolution = await service.resolve(callback.profile, registration_open=True)
            assert resolution.user.username == "jane"
            assert service.session_amr(callback.profile) == ("fed",)
            with pytest.raises(FederationError):
                await service.complete("corp", binding="b", params=params, ip="192.0.2.9")
        finally:
            await service.aclose()
    failure = (await repo.list_audit(limit=1))[0]
    assert failure.event == "federation.failure"
    assert failure.ip == "192.0.2.9"
    assert failure.detail == {"provider": "corp", "reason": "unknown, expired or used state"}


@pytest.mark.parametrize(
    ("trust_mfa", "amr", "acr", "expected"),
    [
        (False, ("pwd", "mfa"), None, ("fed",)),
        (True, ("pwd",), None, ("fed",)),
        (True, ("pwd", "otp", "mfa"), None, ("fed", "pwd", "otp", "mfa")),
        (True, ("hwk",), "phr", ("fed", "hwk", "mfa")),
    ],
)
async def test_the_providers_multi_factor_counts_only_when_trusted(
    repo: UserRepository,
    trust_mfa: bool,
    amr: tuple[str, ...],
    acr: str | None,
    expected: tuple[str, ...],
) -> None:
    corp = replace(provider(), trust_mfa=trust_mfa)
    accounts = Accounts(repo, SessionManager(MemoryStore()), Passwords(), AuditTrail(repo))
    service = Federation(
        {"corp": corp}, session_store=MemoryStore(), users=repo, accounts=accounts,
        audit=accounts.audit,
    )  # fmt: skip
    said = replace(profile(), amr=amr, acr=acr)
    assert service.session_amr(said) == expected
    assert service.mfa_satisfied(said) == (expected != ("fed",))
    await service.aclose()
