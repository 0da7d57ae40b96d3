"""The authorization code flow against a stand-in OpenID Connect provider on a loopback
port (tests/oidc_standin.py): a valid sign-in completes, and every answer that must not be
believed is refused: the state (missing, wrong, replayed, another browser's), the ID token
(tampered, expired, wrong nonce, audience, issuer, authorized party, alg none, unknown
key), and a provider that is down or hangs is unavailable, never an error of ours."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest

from bastion.federation.config import ProviderConfig
from bastion.federation.discovery import Discovery, parse_metadata
from bastion.federation.errors import FederationError, ProviderUnavailable
from bastion.federation.flow import Flows
from bastion.stores.memory import MemoryStore
from tests.github_standin import github_standin
from tests.oidc_standin import (
    CLIENT_ID,
    CLIENT_SECRET,
    StandInIssuer,
    Tweak,
    new_key,
    standin_issuer,
)

REDIRECT = "http://testserver/login/oauth/corp/callback"
BROWSER = "csrf-secret-of-this-browser"


@pytest.fixture(scope="module")
def running() -> Iterator[StandInIssuer]:
    with standin_issuer() as issuer:
        yield issuer


@pytest.fixture
def issuer(running: StandInIssuer) -> Iterator[StandInIssuer]:
    yield running
    running.mode, running.tweak, running.deny, running.fail_token = "ok", None, None, False


def provider_for(issuer: StandInIssuer) -> ProviderConfig:
    return ProviderConfig(
        name="corp",
        kind="oidc",
        issuer=issuer.issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        label="Corp",
    )


@pytest.fixture
async def flows() -> AsyncIterator[Flows]:
    async with httpx.AsyncClient(timeout=1.0) as http:
        yield Flows(MemoryStore(), Discovery(http, refresh_interval=60), http, timeout=1.0)


async def consent(url: str) -> dict[str, str]:
    """What the provider sends the browser back with (the callback's query)."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(url)
    assert answer.status_code == 302
    return dict(parse_qsl(urlsplit(answer.headers["location"]).query))


async def sign_in(flows: Flows, provider: ProviderConfig, binding: str = BROWSER) -> Any:
    url = await flows.begin(
        provider, binding=BROWSER, redirect_uri=REDIRECT, next="/x", intent="sign_in", user_id=None
    )
    params = await consent(url)
    return await flows.complete(provider, binding=binding, params=params)


async def test_a_valid_sign_in_gives_the_providers_identity_and_the_requests_next_page(
    flows: Flows, issuer: StandInIssuer
) -> None:
    provider = provider_for(issuer)
    url = await flows.begin(
        provider, binding=BROWSER, redirect_uri=REDIRECT, next="/x", intent="sign_in", user_id=None
    )
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["code_challenge_method"] == "S256"
    assert query["nonce"]
    assert query["state"]
    assert query["redirect_uri"] == REDIRECT
    callback = await flows.complete(provider, binding=BROWSER, params=await consent(url))
    assert callback.next == "/x"
    assert callback.intent == "sign_in"
    profile = callback.profile
    assert (profile.issuer, profile.subject) == (issuer.issuer, "jane-1")
    assert (profile.email, profile.email_verified) == ("jane@example.org", True)
    assert profile.username_hint == "jane"


async def test_an_answer_without_state_is_refused(flows: Flows, issuer: StandInIssuer) -> None:
    with pytest.raises(FederationError, match="no state"):
        await flows.complete(provider_for(issuer), binding=BROWSER, params={"code": "x"})


async def test_an_unknown_state_is_refused(flows: Flows, issuer: StandInIssuer) -> None:
    with pytest.raises(FederationError, match="unknown"):
        await flows.complete(
            provider_for(issuer), binding=BROWSER, params={"code": "x", "state": "made-up"}
        )


async def test_an_answer_is_accepted_once(flows: Flows, issuer: StandInIssuer) -> None:
    provider = provider_for(issuer)
    url = await flows.begin(
        provider, binding=BROWSER, redirect_uri=REDIRECT, next="/", intent="sign_in", user_id=None
    )
    params = await consent(url)
    await flows.complete(provider, binding=BROWSER, params=params)
    with pytest.raises(FederationError, match="used"):
        await flows.complete(provider, binding=BROWSER, params=params)


async def test_an_answer_brought_to_another_browser_is_refused_and_spent(
    flows: Flows, issuer: StandInIssuer
) -> None:
    provider = provider_for(issuer)
    url = await flows.begin(
        provider, binding=BROWSER, redirect_uri=REDIRECT, next="/", intent="sign_in", user_id=None
    )
    params = await consent(url)
    with pytest.raises(FederationError, match="another browser"):
        await flows.complete(provider, binding="the attackers csrf secret", params=params)
    with pytest.raises(FederationError, match="used"):
        await flows.complete(provider, binding=BROWSER, params=params)


async def test_the_providers_error_is_reported_with_its_code(
    flows: Flows, issuer: StandInIssuer
) -> None:
    issuer.deny = "access_denied"
    with pytest.raises(FederationError) as refused:
        await sign_in(flows, provider_for(issuer))
    assert refused.value.code == "access_denied"


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _alg_none(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, "", algorithm="none", headers={"kid": "key-1"})


@pytest.mark.parametrize(
    ("tweak", "reason"),
    [
        (Tweak(raw=_tampered), "signature"),
        (Tweak(claims={"exp": 1_000_000_000, "iat": 999_999_000}), "expired"),
        (Tweak(claims={"nonce": "another-requests-nonce"}), "nonce"),
        (Tweak(claims={"nonce": None}), "nonce"),
        (Tweak(claims={"aud": "another-client"}), "another client"),
        (Tweak(claims={"iss": "https://evil.example"}), "another issuer"),
        (Tweak(claims={"aud": [CLIENT_ID, "other"]}), "authorized party"),
        (Tweak(claims={"aud": [CLIENT_ID, "other"], "azp": "other"}), "another client"),
        (Tweak(claims={"azp": "other"}), "another client"),
        (Tweak(raw=_alg_none), "algorithm"),
        (Tweak(header={"alg": "HS256"}, key=b"k" * 32), "algorithm"),
        (Tweak(key=new_key("key-1")[0]), "signature"),
        (Tweak(claims={"iat": 1_000_000_000}), "before the request"),
    ],
    ids=[
        "tampered", "expired", "wrong-nonce", "no-nonce", "other-audience", "wrong-issuer",
        "several-audiences-no-azp", "azp-other-client", "azp-alone-other", "alg-none",
        "hs256", "other-key-same-kid", "issued-before-request",
    ],
)  # fmt: skip
async def test_an_id_token_that_must_not_be_believed_is_refused(
    flows: Flows, issuer: StandInIssuer, tweak: Tweak, reason: str
) -> None:
    issuer.tweak = tweak
    with pytest.raises(FederationError, match=reason):
        await sign_in(flows, provider_for(issuer))


async def test_several_audiences_with_this_client_as_authorized_party_are_accepted(
    flows: Flows, issuer: StandInIssuer
) -> None:
    issuer.tweak = Tweak(claims={"aud": [CLIENT_ID, "other"], "azp": CLIENT_ID})
    assert (await sign_in(flows, provider_for(issuer))).profile.subject == "jane-1"


async def test_a_new_signing_key_is_fetched_once_and_an_unknown_one_refused_without_refetching(
    issuer: StandInIssuer,
) -> None:
    provider = provider_for(issuer)
    async with httpx.AsyncClient(timeout=1.0) as http:
        flows = Flows(MemoryStore(), Discovery(http, refresh_interval=3600), http, timeout=1.0)
        issuer.rotate("key-a")
        await sign_in(flows, provider)  # fills the cache
        before = issuer.jwks_requests
        issuer.tweak = Tweak(header={"kid": "no-such-key"})
        with pytest.raises(FederationError, match="unknown key"):
            await sign_in(flows, provider)
        assert issuer.jwks_requests == before  # fetched less than an interval ago
        # With no interval, a rotation is picked up by one refresh.
        flows.discovery.refresh_interval = 0
        issuer.rotate("key-b")
        assert (await sign_in(flows, provider)).profile.subject == "jane-1"
        assert issuer.jwks_requests == before + 1
        issuer.tweak = Tweak(header={"kid": "still-unknown"})
        with pytest.raises(FederationError, match="unknown key"):
            await sign_in(flows, provider)
        assert issuer.jwks_requests == before + 2  # one refresh, then refused


@pytest.mark.parametrize("mode", ["down", "hang"])
async def test_a_provider_that_is_down_or_hangs_is_unavailable(
    issuer: StandInIssuer, mode: str
) -> None:
    issuer.mode = mode
    async with httpx.AsyncClient(timeout=0.5) as http:
        flows = Flows(MemoryStore(), Discovery(http), http, timeout=0.5)
        with pytest.raises(ProviderUnavailable) as down:
            await flows.begin(
                provider_for(issuer),
                binding=BROWSER,
                redirect_uri=REDIRECT,
                next="/",
                intent="sign_in",
                user_id=None,
            )
    assert down.value.name == "corp"


async def test_a_token_endpoint_that_fails_is_unavailable(
    flows: Flows, issuer: StandInIssuer
) -> None:
    issuer.fail_token = True
    with pytest.raises(ProviderUnavailable):
        await sign_in(flows, provider_for(issuer))


async def test_a_discovery_document_naming_another_issuer_is_refused(
    flows: Flows, issuer: StandInIssuer
) -> None:
    provider = provider_for(issuer)
    elsewhere = ProviderConfig(
        name="corp",
        kind="oidc",
        issuer=issuer.issuer + "/",  # not character for character the document's issuer
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        label="Corp",
    )
    assert provider.issuer != elsewhere.issuer
    with pytest.raises(ProviderUnavailable):
        await flows.begin(
            elsewhere,
            binding=BROWSER,
            redirect_uri=REDIRECT,
            next="/",
            intent="sign_in",
            user_id=None,
        )


# -- GitHub ------------------------------------------------------------------------------


def github_provider(url: str) -> ProviderConfig:
    return ProviderConfig(
        name="github",
        kind="github",
        issuer=url,
        client_id="gh-client",
        client_secret="gh-secret",
        label="GitHub",
        scopes=("read:user", "user:email"),
        github_url=url,
        github_api_url=url,
    )


@pytest.mark.parametrize(
    ("emails", "expected"),
    [
        (
            [("old@example.org", True, False), ("kim@example.org", True, True)],
            ("kim@example.org", True),
        ),
        ([("kim@example.org", False, True)], ("kim@example.org", False)),
        ([], (None, False)),
    ],
    ids=["primary-verified", "primary-unverified", "no-address"],
)
async def test_github_gives_the_numeric_id_as_subject_and_the_primary_address(
    flows: Flows, emails: list[tuple[str, bool, bool]], expected: tuple[str | None, bool]
) -> None:
    with github_standin("gh-client", "gh-secret") as github:
        kim = github.add_user("kim", emails=emails, name="Kim")
        provider = github_provider(github.url)
        url = await flows.begin(
            provider,
            binding=BROWSER,
            redirect_uri=REDIRECT,
            next="/",
            intent="sign_in",
            user_id=None,
        )
        assert url.startswith(f"{github.url}/login/oauth/authorize?")
        profile = (
            await flows.complete(provider, binding=BROWSER, params=await consent(url))
        ).profile
    assert (profile.issuer, profile.subject) == (github.url, str(kim.id))
    assert (profile.email, profile.email_verified) == expected
    assert profile.username_hint == "kim"


async def test_a_github_code_it_refuses_is_a_federation_error_with_its_code(
    flows: Flows,
) -> None:
    with github_standin("gh-client", "gh-secret") as github:
        github.add_user("kim", emails=[])
        wrong = replace(github_provider(github.url), client_secret="nope")
        url = await flows.begin(
            wrong, binding=BROWSER, redirect_uri=REDIRECT, next="/", intent="sign_in", user_id=None
        )
        with pytest.raises(FederationError) as refused:
            await flows.complete(wrong, binding=BROWSER, params=await consent(url))
    assert refused.value.code == "incorrect_client_credentials"


# -- discovery documents -----------------------------------------------------------------


def _document(issuer: str, endpoint: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{endpoint}/authorize",
        "token_endpoint": f"{endpoint}/token",
        "jwks_uri": f"{endpoint}/jwks",
    }


def test_an_https_issuer_must_name_https_endpoints() -> None:
    corp = provider_for(StandInIssuer(url="https://id.example.com"))
    assert parse_metadata(corp, _document(corp.issuer, "https://id.example.com")).jwks_uri
    with pytest.raises(ProviderUnavailable):
        parse_metadata(corp, _document(corp.issuer, "http://id.example.com"))
    with pytest.raises(ProviderUnavailable):
        parse_metadata(corp, {**_document(corp.issuer, "https://x"), "token_endpoint": None})
