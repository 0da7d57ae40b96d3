"""Provider settings: what a valid configuration gives, and one clear line naming the
variable for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.exceptions import ConfigError
from bastion.federation.config import ProviderConfig, load_providers
from bastion.settings import Settings

GOOD = {
    "BASTION_OAUTH_CORP_ISSUER": "https://id.example.com",
    "BASTION_OAUTH_CORP_CLIENT_ID": "client",
    "BASTION_OAUTH_CORP_CLIENT_SECRET": "secret",
}


def load(names: str, environ: dict[str, str], env: str = "test") -> dict[str, ProviderConfig]:
    settings = Settings(oauth_providers=names, env=env, secret_key="s" * 40)
    return load_providers(settings, environ)


def test_no_providers_is_the_default() -> None:
    assert Settings().oauth_providers == []
    assert load("", {}) == {}


def test_an_openid_connect_provider_gets_its_defaults() -> None:
    corp = load("corp", GOOD)["corp"]
    assert (corp.kind, corp.issuer, corp.client_id, corp.label) == (
        "oidc",
        "https://id.example.com",
        "client",
        "corp",
    )
    assert corp.scopes == ("openid", "email", "profile")
    assert not corp.trust_email
    assert not corp.trust_mfa
    assert "secret" not in repr(corp)


def test_a_github_provider_gets_githubs_addresses_and_scopes() -> None:
    github = load(
        "github",
        {
            "BASTION_OAUTH_GITHUB_KIND": "github",
            "BASTION_OAUTH_GITHUB_CLIENT_ID": "id",
            "BASTION_OAUTH_GITHUB_CLIENT_SECRET": "secret",
            "BASTION_OAUTH_GITHUB_LABEL": "GitHub",
            "BASTION_OAUTH_GITHUB_TRUST_EMAIL": "true",
        },
    )["github"]
    assert github.issuer == "https://github.com"
    assert github.github_api_url == "https://api.github.com"
    assert github.scopes == ("read:user", "user:email")
    assert github.trust_email
    assert github.label == "GitHub"


def test_names_with_a_dash_read_variables_with_an_underscore() -> None:
    environ = {key.replace("CORP", "CORP_SSO"): value for key, value in GOOD.items()}
    assert load("corp-sso", environ)["corp-sso"].client_id == "client"


def test_variable_names_are_case_insensitive_like_the_settings() -> None:
    assert load("corp", {key.lower(): value for key, value in GOOD.items()})["corp"]


@pytest.mark.parametrize(
    ("names", "change", "message"),
    [
        ("Corp", {}, "BASTION_OAUTH_PROVIDERS: 'Corp' is not a provider name"),
        ("corp,corp", {}, "share the variables"),
        ("corp", {"BASTION_OAUTH_CORP_KIND": "saml"}, "BASTION_OAUTH_CORP_KIND"),
        ("corp", {"BASTION_OAUTH_CORP_ISSUER": ""}, "BASTION_OAUTH_CORP_ISSUER is required"),
        ("corp", {"BASTION_OAUTH_CORP_KIND": "github"}, "BASTION_OAUTH_CORP_ISSUER: a GitHub"),
        ("corp", {"BASTION_OAUTH_CORP_CLIENT_ID": ""}, "BASTION_OAUTH_CORP_CLIENT_ID is required"),
        ("corp", {"BASTION_OAUTH_CORP_CLIENT_SECRET": ""}, "BASTION_OAUTH_CORP_CLIENT_SECRET"),
        ("corp", {"BASTION_OAUTH_CORP_ISSUER": "http://id.example.com"}, "must be https"),
        ("corp", {"BASTION_OAUTH_CORP_ISSUER": "id.example.com"}, "is not an https URL"),
        ("corp", {"BASTION_OAUTH_CORP_ISSUER": "https://id.example.com?x=1"}, "not an https"),
        ("corp", {"BASTION_OAUTH_CORP_TRUST_EMAIL": "maybe"}, "BASTION_OAUTH_CORP_TRUST_EMAIL"),
        ("corp", {"BASTION_OAUTH_CORP_TRUST_MFA": "2"}, "BASTION_OAUTH_CORP_TRUST_MFA"),
        ("corp", {"BASTION_OAUTH_CORP_SCOPES": "email profile"}, "must include `openid`"),
        ("corp", {"BASTION_OAUTH_CORP_LABEL": "two\nlines"}, "BASTION_OAUTH_CORP_LABEL"),
    ],
)
def test_a_mistake_is_one_line_naming_the_variable(
    names: str, change: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")) as refused:
        load(names, {**GOOD, **change})
    assert "\n" not in str(refused.value)
    assert "secret" not in str(refused.value).replace("CLIENT_SECRET", "")


def test_a_misspelt_variable_of_a_configured_provider_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="BASTION_OAUTH_CORP_CLIENTID is not a provider setting"):
        load("corp", {**GOOD, "BASTION_OAUTH_CORP_CLIENTID": "x"})
    # Another configured provider's variables, and unconfigured ones, are fine.
    other = {key.replace("CORP", "CORP_EU"): value for key, value in GOOD.items()}
    assert load("corp,corp_eu", {**GOOD, **other}).keys() == {"corp", "corp_eu"}
    assert load("corp", {**GOOD, "BASTION_OAUTH_OLD_CLIENTID": "x"})


def test_a_dash_and_an_underscore_spelling_of_one_name_collide() -> None:
    environ = {key.replace("CORP", "A_B"): value for key, value in GOOD.items()}
    with pytest.raises(ConfigError, match="share the variables"):
        load("a-b,a_b", environ)


def test_plain_http_is_for_a_loopback_issuer_outside_production_only() -> None:
    local = {**GOOD, "BASTION_OAUTH_CORP_ISSUER": "http://127.0.0.1:8080"}
    assert load("corp", local)["corp"].issuer == "http://127.0.0.1:8080"
    assert load("corp", {**GOOD, "BASTION_OAUTH_CORP_ISSUER": "http://localhost:9"})
    with pytest.raises(ConfigError, match="BASTION_OAUTH_CORP_ISSUER: must be https"):
        load("corp", local, env="production")


def test_the_env_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "".join(f"{key}={value}\n" for key, value in GOOD.items())
        + "BASTION_OAUTH_CORP_LABEL=From the file\n"
    )
    monkeypatch.setenv("BASTION_OAUTH_CORP_CLIENT_ID", "from-the-environment")
    corp = load_providers(Settings(oauth_providers="corp"))["corp"]
    assert corp.label == "From the file"
    assert corp.client_id == "from-the-environment"


def test_services_refuse_to_open_with_a_broken_provider(tmp_path: Path) -> None:
    import asyncio

    from bastion.services import open_services

    settings = Settings(data_dir=tmp_path, oauth_providers="nowhere")
    with pytest.raises(ConfigError, match="BASTION_OAUTH_NOWHERE_ISSUER is required"):
        asyncio.run(open_services(settings))
