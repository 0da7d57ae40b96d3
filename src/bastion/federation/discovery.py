"""OpenID Connect discovery documents and signing keys (JWKS), fetched and cached.

Both are cached for ``ttl`` seconds per issuer. An ID token signed with a key id the cache
does not know makes one refresh of the key set (providers rotate keys), at most once per
``refresh_interval`` seconds per provider: a stream of forged ``kid`` values cannot turn
into a stream of requests to the provider. Any failure to fetch is
:class:`ProviderUnavailable`, never an error page of ours.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKError, PyJWKSetError

from bastion.clock import Clock, system_clock
from bastion.federation.config import ProviderConfig
from bastion.federation.errors import ProviderUnavailable

DISCOVERY_PATH = "/.well-known/openid-configuration"
# Bigger answers are not a discovery document or a key set.
MAX_DOCUMENT_BYTES = 512 * 1024
_REQUIRED = ("authorization_endpoint", "token_endpoint", "jwks_uri")


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of a discovery document Bastion uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    signing_algorithms: tuple[str, ...]
    token_auth_methods: tuple[str, ...]


@dataclass
class _Keys:
    keys: dict[str, PyJWK]  # by kid ("" for a key without one)
    fetched_at: float


async def get_json(http: httpx.AsyncClient, name: str, url: str, **kwargs: Any) -> Any:
    """GET ``url`` as JSON; every failure (network, timeout, status, size, syntax) is
    :class:`ProviderUnavailable` for ``name``."""
    try:
        response = await http.get(url, **kwargs)
    except httpx.HTTPError as error:
        raise ProviderUnavailable(name, f"{url}: {type(error).__name__}") from None
    if response.status_code != 200:
        raise ProviderUnavailable(name, f"{url}: HTTP {response.status_code}")
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise ProviderUnavailable(name, f"{url}: answer too large")
    try:
        return json.loads(response.content)
    except ValueError:
        raise ProviderUnavailable(name, f"{url}: not JSON") from None


class Discovery:
    """Discovery documents and key sets of the configured OpenID Connect providers."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        clock: Clock = system_clock,
        ttl: float = 3600,
        refresh_interval: float = 60,
    ) -> None:
        self.http = http
        self.clock = clock
        self.ttl = ttl
        self.refresh_interval = refresh_interval
        self._metadata: dict[str, tuple[ProviderMetadata, float]] = {}
        self._keys: dict[str, _Keys] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def metadata(self, provider: ProviderConfig) -> ProviderMetadata:
        cached = self._metadata.get(provider.name)
        if cached is not None and self.clock() - cached[1] < self.ttl:
            return cached[0]
        async with self._lock(provider.name):
            cached = self._metadata.get(provider.name)
            if cached is not None and self.clock() - cached[1] < self.ttl:
                return cached[0]
            url = provider.issuer.rstrip("/") + DISCOVERY_PATH
            metadata = parse_metadata(provider, await get_json(self.http, provider.name, url))
            self._metadata[provider.name] = (metadata, self.clock())
            return metadata

    async def signing_key(self, provider: ProviderConfig, kid: str | None) -> PyJWK | None:
        """The provider's key with id ``kid`` (a token without ``kid``: the only key, if
        there is just one); None when it has no such key even after a refresh."""
        keys = await self._key_set(provider, refresh=False)
        found = _pick(keys.keys, kid)
        if found is not None:
            return found
        now = self.clock()
        if now - keys.fetched_at < self.refresh_interval:
            return None
        keys = await self._key_set(provider, refresh=True)
        return _pick(keys.keys, kid)

    async def _key_set(self, provider: ProviderConfig, *, refresh: bool) -> _Keys:
        current = self._keys.get(provider.name)
        if current is not None and not refresh and self.clock() - current.fetched_at < self.ttl:
            return current
        # Before the lock: metadata() takes the same one.
        metadata = await self.metadata(provider)
        async with self._lock(provider.name):
            latest = self._keys.get(provider.name)
            if latest is not None and latest is not current:
                return latest  # another request fetched them meanwhile
            document = await get_json(self.http, provider.name, metadata.jwks_uri)
            keys = _Keys(_parse_keys(provider, document), self.clock())
            self._keys[provider.name] = keys
            return keys


def _pick(keys: dict[str, PyJWK], kid: str | None) -> PyJWK | None:
    if kid is not None:
        return keys.get(kid)
    return next(iter(keys.values())) if len(keys) == 1 else None


def parse_metadata(provider: ProviderConfig, document: Any) -> ProviderMetadata:
    name = provider.name
    if not isinstance(document, dict):
        raise ProviderUnavailable(name, "discovery document is not an object")
    # OpenID Connect Discovery 4.3: the issuer must be exactly the one configured, or a
    # document served elsewhere could vouch for tokens of another issuer.
    if document.get("issuer") != provider.issuer:
        raise ProviderUnavailable(name, "discovery document names another issuer")
    # The client secret, codes and tokens go to these endpoints: https, unless the issuer
    # itself is a plain-http loopback one (allowed only outside production).
    schemes = ("https://", "http://") if provider.issuer.startswith("http://") else ("https://",)
    for key in (*_REQUIRED, "userinfo_endpoint"):
        value = document.get(key)
        if value is None and key == "userinfo_endpoint":
            continue
        if not isinstance(value, str) or not value.startswith(schemes):
            raise ProviderUnavailable(name, f"discovery document: no usable {key}")
    userinfo = document.get("userinfo_endpoint")
    algorithms = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    return ProviderMetadata(
        issuer=document["issuer"],
        authorization_endpoint=document["authorization_endpoint"],
        token_endpoint=document["token_endpoint"],
        jwks_uri=document["jwks_uri"],
        userinfo_endpoint=userinfo if isinstance(userinfo, str) else None,
        signing_algorithms=tuple(a for a in algorithms if isinstance(a, str)),
        token_auth_methods=tuple(m for m in methods if isinstance(m, str)),
    )


def _parse_keys(provider: ProviderConfig, document: Any) -> dict[str, PyJWK]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ProviderUnavailable(provider.name, "key set is not a JWK set")
    # Signing keys only: a key meant for encryption never verifies a signature; symmetric
    # keys ("oct") have no business in a public key set.
    usable = [
        key
        for key in document["keys"]
        if isinstance(key, dict) and key.get("use", "sig") == "sig" and key.get("kty") != "oct"
    ]
    try:
        parsed = PyJWKSet.from_dict({"keys": usable}).keys if usable else []
    except (PyJWKSetError, PyJWKError):
        parsed = []
    return {str(key.key_id or ""): key for key in parsed}
