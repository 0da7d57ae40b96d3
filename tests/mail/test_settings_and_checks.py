"""Mail settings are validated at start-up, and `bastion check --deploy` names the mail
setups that are unsafe or do not work in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bastion.checks import find_problems
from bastion.exceptions import ConfigError
from bastion.mail import build_mailer
from bastion.settings import Settings

STRONG = "k3Y-9fQ2mZ7xW1vT8rL4pN6sB0cH5jD2aE"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://App.Example.com/", "https://app.example.com"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("", ""),
    ],
)
def test_public_url_is_kept_without_a_trailing_slash(given: str, kept: str) -> None:
    assert Settings(public_url=given).public_url == kept


@pytest.mark.parametrize(
    "url",
    [
        "app.example.com",
        "ftp://app.example.com",
        "https://app.example.com/auth",
        "https://app.example.com/?next=x",
        "https://app.example.com/#top",
        "https://user:pw@app.example.com",
        "https://app.example.com:99999",
        "https://app.example.com\r\nX: y",
        "https:///nohost",
    ],
)
def test_public_url_must_be_scheme_host_and_port_only(url: str) -> None:
    with pytest.raises(ValidationError, match="public_url"):
        Settings(public_url=url)


@pytest.mark.parametrize(
    "sender",
    [
        "noreply",
        "a@example.com, b@example.com",
        "Acme <noreply@acme.example>\r\nBcc: victim@example.com",
        "Acme <noreply@>",
        "",
    ],
)
def test_email_from_must_be_one_address(sender: str) -> None:
    with pytest.raises(ValidationError, match="email_from"):
        Settings(email_from=sender)


def test_email_from_may_carry_a_display_name() -> None:
    assert Settings(email_from=" Acme <noreply@acme.example> ").email_from == (
        "Acme <noreply@acme.example>"
    )


@pytest.mark.parametrize("values", [{"smtp_username": "mailer"}, {"smtp_password": "s3cret-pass"}])
def test_smtp_user_name_and_password_go_together(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(**values)


def test_an_empty_smtp_password_variable_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_SMTP_PASSWORD", "")
    assert Settings().smtp_password is None


def test_an_unreadable_ca_file_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    for ca_file in (bad, tmp_path / "missing.pem"):
        settings = Settings(email_backend="smtp", smtp_ca_file=ca_file)
        with pytest.raises(ConfigError, match="BASTION_SMTP_CA_FILE"):
            build_mailer(settings)


def production(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "production",
        "secret_key": STRONG,
        "data_dir": tmp_path,
        "public_url": "https://app.example.com",
        "smtp_host": "smtp.example.com",
        **overrides,
    }
    return Settings(**values)


def mail_findings(settings: Settings) -> set[str]:
    return {f.code for f in find_problems(settings, deploy=True) if f.code.startswith("email.")}


def test_production_mail_over_starttls_with_a_public_url_is_fine(tmp_path: Path) -> None:
    assert mail_findings(production(tmp_path)) == set()
    assert mail_findings(production(tmp_path, smtp_security="tls", smtp_port=465)) == set()


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"public_url": ""}, "email.no_public_url"),
        ({"public_url": "http://app.example.com"}, "email.insecure_public_url"),
        ({"smtp_security": "none"}, "email.smtp_plaintext"),
        ({"smtp_security": "none", "smtp_host": "10.0.0.5"}, "email.smtp_plaintext"),
        ({"email_backend": "console"}, "email.not_sent"),
        ({"email_backend": "file"}, "email.not_sent"),
    ],
)
def test_deploy_check_names_each_unsafe_mail_setup(
    tmp_path: Path, overrides: dict[str, Any], code: str
) -> None:
    assert mail_findings(production(tmp_path, **overrides)) == {code}


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_plain_smtp_to_a_relay_on_this_machine_is_fine(tmp_path: Path, host: str) -> None:
    settings = production(tmp_path, smtp_security="none", smtp_host=host, smtp_port=25)
    assert mail_findings(settings) == set()


def test_mail_is_not_checked_without_deploy(tmp_path: Path) -> None:
    found = find_problems(production(tmp_path, public_url=""), deploy=False)
    assert not [f for f in found if f.code.startswith("email.")]
