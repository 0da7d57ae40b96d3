"""The external providers an operator configured, read and checked once at start-up.

``BASTION_OAUTH_PROVIDERS`` (a real setting) names them; each one's registration comes from
variables named after it, ``BASTION_OAUTH_<NAME>_*``, which no fixed settings class can
declare. They are read from the environment and from the ``.env`` file the settings read
(the environment wins). Every mistake is one :class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values

from bastion.exceptions import ConfigError
from bastion.settings import Settings, is_one_line

ProviderKind = Literal["oidc", "github"]

GITHUB_URL = "https://github.com"
GITHUB_API_URL = "https://api.github.com"
OIDC_SCOPES = ("openid", "email", "profile")
GITHUB_SCOPES = ("read:user", "user:email")
MAX_LABEL = 100
# The name is part of the routes (/login/oauth/<name>) and of the variables' names.
_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_LOOPBACK_NAMES = {"localhost"}
SUFFIXES = frozenset(
    {
        "ISSUER", "KIND", "CLIENT_ID", "CLIENT_SECRET", "LABEL", "TRUST_EMAIL", "TRUST_MFA",
        "SCOPES", "GITHUB_URL", "GITHUB_API_URL",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One provider's registration. ``issuer`` names its identities (for GitHub, the web
    address, ``https://github.com`` unless pointed elsewhere)."""

    name: str
    kind: ProviderKind
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    label: str
    trust_email: bool = False
    trust_mfa: bool = False
    scopes: tuple[str, ...] = OIDC_SCOPES
    # GitHub only: the web address (authorize, token) and the API's.
    github_url: str = GITHUB_URL
    github_api_url: str = GITHUB_API_URL


def variable(name: str, suffix: str) -> str:
    """``BASTION_OAUTH_<NAME>_<SUFFIX>``; a ``-`` in the name is ``_`` in the variable."""
    return f"BASTION_OAUTH_{name.upper().replace('-', '_')}_{suffix}"


def load_providers(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, ProviderConfig]:
    """The providers of ``settings.oauth_providers``, by name, in the order given.

    ``environ`` replaces the environment and ``.env`` (tests); by default both are read.
    """
    values = _upper(_environment() if environ is None else environ)
    providers: dict[str, ProviderConfig] = {}
    seen: dict[str, str] = {}
    for name in settings.oauth_providers:
        if not _NAME.match(name):
            raise ConfigError(
                f"BASTION_OAUTH_PROVIDERS: {name!r} is not a provider name "
                "(lower-case letters, digits, - and _, at most 64)"
            )
        key = variable(name, "")
        if key in seen:
            raise ConfigError(
                f"BASTION_OAUTH_PROVIDERS: {name!r} and {seen[key]!r} share the variables "
                f"{key}*; name them apart"
            )
        seen[key] = name
        providers[name] = _provider(name, values, production=settings.is_production)
    _check_spelling(providers, values)
    return providers


def _check_spelling(providers: Mapping[str, ProviderConfig], values: Mapping[str, str]) -> None:
    """A misspelt variable of a configured provider (``_CLIENTID``) would silently be a
    default; it stops start-up instead."""
    known = {variable(name, suffix) for name in providers for suffix in SUFFIXES}
    for key in sorted(values):
        if key in known:
            continue
        if any(key.startswith(variable(name, "")) for name in providers):
            raise ConfigError(f"{key} is not a provider setting (docs/settings.md lists them)")


def _environment() -> dict[str, str]:
    # The same file the settings read (pydantic-settings: ``.env`` in the working folder).
    env_file = Settings.model_config.get("env_file")
    values: dict[str, str] = {}
    if isinstance(env_file, str) and Path(env_file).is_file():
        values = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    values.update(os.environ)
    return values


def _upper(values: Mapping[str, str]) -> dict[str, str]:
    # Like the settings, variable names are case-insensitive.
    return {
        key.upper(): value
        for key, value in values.items()
        if key.upper().startswith("BASTION_OAUTH_")
    }


def _provider(name: str, values: Mapping[str, str], *, production: bool) -> ProviderConfig:
    def get(suffix: str) -> str:
        return values.get(variable(name, suffix), "").strip()

    kind = get("KIND").lower() or "oidc"
    if kind not in ("oidc", "github"):
        raise ConfigError(f"{variable(name, 'KIND')}: {kind!r} is not `oidc` or `github`")
    issuer = get("ISSUER")
    if kind == "github" and issuer:
        raise ConfigError(
            f"{variable(name, 'ISSUER')}: a GitHub provider has no issuer "
            f"(remove it, or {variable(name, 'KIND')})"
        )
    if kind == "oidc" and not issuer:
        raise ConfigError(
            f"{variable(name, 'ISSUER')} is required (or {variable(name, 'KIND')}=github)"
        )
    client_id, client_secret = get("CLIENT_ID"), get("CLIENT_SECRET")
    for suffix, value in (("CLIENT_ID", client_id), ("CLIENT_SECRET", client_secret)):
        if not value:
            raise ConfigError(f"{variable(name, suffix)} is required")
    label = get("LABEL") or name
    if len(label) > MAX_LABEL or not is_one_line(label):
        raise ConfigError(f"{variable(name, 'LABEL')}: one line of at most {MAX_LABEL} characters")
    scopes = tuple(get("SCOPES").split()) or (OIDC_SCOPES if kind == "oidc" else GITHUB_SCOPES)
    if kind == "oidc" and "openid" not in scopes:
        raise ConfigError(f"{variable(name, 'SCOPES')} must include `openid`")
    github_url = _url(name, "GITHUB_URL", get("GITHUB_URL") or GITHUB_URL, production)
    github_api_url = _url(
        name, "GITHUB_API_URL", get("GITHUB_API_URL") or GITHUB_API_URL, production
    )
    return ProviderConfig(
        name=name,
        kind=kind,  # type: ignore[arg-type]  # checked above
        issuer=_url(name, "ISSUER", issuer, production) if kind == "oidc" else github_url,
        client_id=client_id,
        client_secret=client_secret,
        label=label,
        trust_email=_boolean(name, "TRUST_EMAIL", get("TRUST_EMAIL")),
        trust_mfa=_boolean(name, "TRUST_MFA", get("TRUST_MFA")),
        scopes=scopes,
        github_url=github_url.rstrip("/"),
        github_api_url=github_api_url.rstrip("/"),
    )


def _boolean(name: str, suffix: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"{variable(name, suffix)}: {value!r} is not true or false")


def _url(name: str, suffix: str, value: str, production: bool) -> str:
    """An https URL (plain http only for a loopback host outside production: a local test
    provider). Kept as written: an issuer is compared character for character."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        parts = urlsplit("")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or any(char.isspace() for char in value)
        or not is_one_line(value)
    ):
        raise ConfigError(f"{variable(name, suffix)}: {value!r} is not an https URL")
    if parts.scheme == "http" and (production or not _loopback(parts.hostname)):
        raise ConfigError(
            f"{variable(name, suffix)}: must be https"
            + ("" if production else " (http only for localhost in development and test)")
        )
    return value


def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
