"""The authorization code flow with a provider: the request, and the checks on its answer.

A request gets a random ``state`` (CSRF protection of the callback), ``nonce`` (ties the ID
token to this request) and PKCE code verifier (S256: a stolen code is useless without it).
They are kept in the session store under a hash of ``state``, for ten minutes, bound to a
hash of the browser's CSRF secret, and taken out by the first callback that names them:
a request serves one callback, in the browser that began it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import jwt
from jwt import PyJWK

from bastion.clock import Clock, system_clock
from bastion.federation.config import ProviderConfig
from bastion.federation.discovery import Discovery, ProviderMetadata, get_json
from bastion.federation.errors import FederationError, ProviderUnavailable
from bastion.stores.base import Store

with warnings.catch_warnings():
    # Authlib 1.9 prefers the "httpx2" package and warns when it falls back to httpx; its
    # own module turns its warnings on, so it is imported first and then silenced.
    from authlib.deprecate import AuthlibDeprecationWarning  # type: ignore[import-untyped]

    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
    from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
        AsyncOAuth2Client,
    )

Intent = Literal["sign_in", "link"]
REQUEST_TTL = 600
_KEY_PREFIX = "oauth:request:"
# Asymmetric signatures only: with "none" or an HMAC "signed" with the public key, anyone
# could make an ID token.
_ALGORITHMS_OF = {
    "RSA": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
    "EC": {"ES256", "ES384", "ES512"},
    "OKP": {"EdDSA", "Ed25519"},
}
_GITHUB_ACCEPT = {"Accept": "application/vnd.github+json"}


@dataclass(frozen=True, slots=True)
class ExternalProfile:
    """Who the provider says signed in. ``issuer`` + ``subject`` identify them; the rest
    is what the provider claims (``email_verified`` as it says)."""

    provider: str
    issuer: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    username_hint: str | None = None
    display_name: str | None = None
    amr: tuple[str, ...] = ()
    acr: str | None = None


@dataclass(frozen=True, slots=True)
class Callback:
    profile: ExternalProfile
    next: str
    intent: Intent
    user_id: int | None
    redirect_uri: str


@dataclass(frozen=True, slots=True)
class _Pending:
    provider: str
    binding: str  # sha256 of the browser's CSRF secret, hex
    nonce: str
    verifier: str
    redirect_uri: str
    next: str
    intent: Intent
    user_id: int | None
    created: float


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


class Flows:
    """Authorization requests and callbacks for every kind of provider."""

    def __init__(
        self,
        store: Store,
        discovery: Discovery,
        http: httpx.AsyncClient,
        *,
        timeout: float,
        leeway: float = 60,
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self.discovery = discovery
        self.http = http
        self.timeout = timeout
        self.leeway = leeway
        self.clock = clock

    # -- the request -----------------------------------------------------------------------

    async def begin(
        self,
        provider: ProviderConfig,
        *,
        binding: str,
        redirect_uri: str,
        next: str,
        intent: Intent,
        user_id: int | None,
    ) -> str:
        if provider.kind == "github":
            endpoint = f"{provider.github_url}/login/oauth/authorize"
        else:
            endpoint = (await self.discovery.metadata(provider)).authorization_endpoint
        state = secrets.token_urlsafe(32)
        pending = _Pending(
            provider=provider.name,
            binding=_sha256(binding),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(64),  # 86 characters (RFC 7636: 43 to 128)
            redirect_uri=redirect_uri,
            next=next,
            intent=intent,
            user_id=user_id,
            created=self.clock(),
        )
        await self.store.set(
            _KEY_PREFIX + _sha256(state), json.dumps(asdict(pending)).encode(), REQUEST_TTL
        )
        params = {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(provider.scopes),
            "state": state,
            "code_challenge": _s256(pending.verifier),
            "code_challenge_method": "S256",
        }
        if provider.kind == "oidc":
            params["nonce"] = pending.nonce
        return _with_query(endpoint, params)

    # -- the callback ----------------------------------------------------------------------

    async def complete(
        self,
        provider: ProviderConfig,
        *,
        binding: str,
        params: Mapping[str, str],
        redirect_uri: str | None = None,
    ) -> Callback:
        pending = await self._take(provider, binding, params.get("state"))
        if redirect_uri is not None and redirect_uri != pending.redirect_uri:
            raise FederationError("the answer came to another address")
        if params.get("error"):
            raise FederationError("the provider refused the sign-in", params["error"][:64])
        # RFC 9207: a response naming another issuer was meant for another provider.
        if "iss" in params and params["iss"] != provider.issuer:
            raise FederationError("the answer names another issuer")
        code = params.get("code")
        if not code:
            raise FederationError("the answer holds no authorization code")
        if provider.kind == "github":
            profile = await self._github(provider, code, pending)
        else:
            profile = await self._oidc(provider, code, pending)
        return Callback(
            profile, pending.next, pending.intent, pending.user_id, pending.redirect_uri
        )

    async def _take(self, provider: ProviderConfig, binding: str, state: str | None) -> _Pending:
        if not state:
            raise FederationError("the answer holds no state")
        raw = await self.store.pop(_KEY_PREFIX + _sha256(state))
        if raw is None:
            raise FederationError("unknown, expired or used state")
        pending = _Pending(**json.loads(raw))
        if pending.provider != provider.name:
            raise FederationError("the state belongs to another provider")
        if not hmac.compare_digest(pending.binding, _sha256(binding)):
            raise FederationError("the sign-in began in another browser")
        return pending

    async def _exchange(
        self, provider: ProviderConfig, url: str, code: str, pending: _Pending, auth_method: str
    ) -> dict[str, Any]:
        client = AsyncOAuth2Client(
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            token_endpoint_auth_method=auth_method,
            timeout=self.timeout,
        )
        try:
            async with client:
                token = await client.fetch_token(
                    url,
                    grant_type="authorization_code",
                    code=code,
                    redirect_uri=pending.redirect_uri,
                    code_verifier=pending.verifier,
                )
        except OAuthError as error:
            raise FederationError("the provider refused the code", str(error.error)[:64]) from None
        except (httpx.HTTPError, ValueError, TypeError) as error:
            # TypeError: Authlib reading a 200 answer whose body is not a JSON object.
            raise ProviderUnavailable(
                provider.name, f"token endpoint: {type(error).__name__}"
            ) from None
        if not isinstance(token, dict) or not isinstance(token.get("access_token"), str):
            raise ProviderUnavailable(provider.name, "token endpoint: no access token")
        return dict(token)

    # -- OpenID Connect --------------------------------------------------------------------

    async def _oidc(
        self, provider: ProviderConfig, code: str, pending: _Pending
    ) -> ExternalProfile:
        metadata = await self.discovery.metadata(provider)
        methods = metadata.token_auth_methods
        auth_method = (
            "client_secret_post"
            if "client_secret_post" in methods and "client_secret_basic" not in methods
            else "client_secret_basic"
        )
        token = await self._exchange(provider, metadata.token_endpoint, code, pending, auth_method)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise FederationError("the provider sent no ID token")
        claims = await self._verify_id_token(provider, metadata, id_token, pending)
        if metadata.userinfo_endpoint and "email" not in claims:
            claims = {**await self._userinfo(provider, metadata, token, claims), **claims}
        return _oidc_profile(provider, claims)

    async def _verify_id_token(
        self, provider: ProviderConfig, metadata: ProviderMetadata, id_token: str, pending: _Pending
    ) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.InvalidTokenError:
            raise FederationError("the ID token is malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in metadata.signing_algorithms:
            raise FederationError("the ID token's algorithm is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise FederationError("the ID token is malformed")
        key = await self.discovery.signing_key(provider, kid)
        if key is None:
            raise FederationError("the ID token is signed with an unknown key")
        if not _key_allows(key, alg):
            raise FederationError("the ID token's algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=[alg],
                audience=provider.client_id,
                issuer=provider.issuer,
                leeway=self.leeway,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise FederationError("the ID token has expired") from None
        except jwt.InvalidAudienceError:
            raise FederationError("the ID token is for another client") from None
        except jwt.InvalidIssuerError:
            raise FederationError("the ID token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise FederationError("the ID token's signature is invalid") from None
        except jwt.InvalidTokenError as error:
            raise FederationError(f"the ID token is invalid ({type(error).__name__})") from None
        _check_claims(claims, provider, pending, self.leeway)
        return claims

    async def _userinfo(
        self,
        provider: ProviderConfig,
        metadata: ProviderMetadata,
        token: Mapping[str, Any],
        claims: Mapping[str, Any],
    ) -> dict[str, Any]:
        assert metadata.userinfo_endpoint is not None
        info = await get_json(
            self.http,
            provider.name,
            metadata.userinfo_endpoint,
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        # OpenID Connect Core 5.3.2: the answer is about the ID token's subject, or unused.
        if not isinstance(info, dict) or info.get("sub") != claims["sub"]:
            raise FederationError("the provider's user info is about someone else")
        return {
            k: info[k]
            for k in ("email", "email_verified", "preferred_username", "name")
            if k in info
        }

    # -- GitHub ----------------------------------------------------------------------------

    async def _github(
        self, provider: ProviderConfig, code: str, pending: _Pending
    ) -> ExternalProfile:
        url = f"{provider.github_url}/login/oauth/access_token"
        token = await self._exchange(provider, url, code, pending, "client_secret_post")
        headers = {**_GITHUB_ACCEPT, "Authorization": f"Bearer {token['access_token']}"}
        user = await get_json(
            self.http, provider.name, f"{provider.github_api_url}/user", headers=headers
        )
        if (
            not isinstance(user, dict)
            or not isinstance(user.get("id"), int)
            or isinstance(user.get("id"), bool)
        ):
            raise ProviderUnavailable(provider.name, "GitHub user without a numeric id")
        emails = await get_json(
            self.http, provider.name, f"{provider.github_api_url}/user/emails", headers=headers
        )
        primary = (
            next(
                (
                    e
                    for e in emails
                    if isinstance(e, dict) and e.get("primary") and isinstance(e.get("email"), str)
                ),
                None,
            )
            if isinstance(emails, list)
            else None
        )
        login, name = user.get("login"), user.get("name")
        return ExternalProfile(
            provider=provider.name,
            issuer=provider.issuer,
            subject=str(user["id"]),
            email=primary["email"] if primary else None,
            email_verified=bool(primary and primary.get("verified") is True),
            username_hint=login if isinstance(login, str) else None,
            display_name=name if isinstance(name, str) else None,
        )


def _key_allows(key: PyJWK, alg: str) -> bool:
    """Whether ``key`` may verify an ``alg`` signature: the algorithm the key names, else
    one of its type's asymmetric algorithms (for EC, the one of its curve)."""
    named = key._jwk_data.get("alg")
    if isinstance(named, str):
        return named == alg
    if key.key_type == "EC":
        return alg == key.algorithm_name
    return alg in _ALGORITHMS_OF.get(str(key.key_type), set())


def _check_claims(
    claims: Mapping[str, Any], provider: ProviderConfig, pending: _Pending, leeway: float
) -> None:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise FederationError("the ID token's subject is invalid")
    audience = claims["aud"]
    azp = claims.get("azp")
    # OpenID Connect Core 3.1.3.7: with several audiences the authorized party must be
    # present, and whenever it is present it must be this client.
    if isinstance(audience, list) and len(audience) > 1 and azp is None:
        raise FederationError("the ID token names several audiences but no authorized party")
    if azp is not None and azp != provider.client_id:
        raise FederationError("the ID token was issued to another client")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(nonce, pending.nonce):
        raise FederationError("the ID token's nonce does not match the request")
    iat = claims["iat"]
    # Issued before the request began: not an answer to it.
    if not isinstance(iat, int | float) or iat < pending.created - leeway:
        raise FederationError("the ID token was issued before the request")


def _oidc_profile(provider: ProviderConfig, claims: Mapping[str, Any]) -> ExternalProfile:
    def text(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) and value.strip() else None

    amr = claims.get("amr")
    verified = claims.get("email_verified")
    return ExternalProfile(
        provider=provider.name,
        issuer=provider.issuer,
        subject=claims["sub"],
        email=text("email"),
        # Some providers send the string "true".
        email_verified=verified is True or verified == "true",
        username_hint=text("preferred_username") or text("nickname"),
        display_name=text("name"),
        amr=tuple(m for m in amr if isinstance(m, str)) if isinstance(amr, list) else (),
        acr=text("acr"),
    )
