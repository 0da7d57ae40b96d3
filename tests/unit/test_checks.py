"""`bastion check`: each finding, and a clean bill for a careful production setup."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bastion import keys
from bastion.checks import find_problems
from bastion.settings import Settings

STRONG = "k3Y-9fQ2mZ7xW1vT8rL4pN6sB0cH5jD2aE"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("BASTION_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def careful(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "production",
        "secret_key": STRONG,
        "data_dir": tmp_path,
        "database_url": "postgresql+asyncpg://bastion@db.internal/bastion",
        "redis_url": "rediss://cache.internal:6380/0",
        "trusted_proxies": ["10.0.0.0/8"],
        "public_url": "https://app.example.com",
        **overrides,
    }
    return Settings(**values)


def codes(settings: Settings, **kwargs: Any) -> set[str]:
    return {finding.code for finding in find_problems(settings, **kwargs)}


def test_careful_production_settings_have_no_findings(tmp_path: Path) -> None:
    assert codes(careful(tmp_path), deploy=True, workers=8) == set()


def test_development_defaults_are_fine_without_deploy(tmp_path: Path) -> None:
    assert codes(Settings(data_dir=tmp_path)) == set()


def test_deploy_reports_the_development_secret_and_environment(tmp_path: Path) -> None:
    found = codes(Settings(data_dir=tmp_path), deploy=True)
    assert {"secret.development", "env.not_production", "db.sqlite"} <= found


def test_weak_secret_is_reported_even_without_deploy(tmp_path: Path) -> None:
    assert "secret.weak" in codes(Settings(data_dir=tmp_path, secret_key="short"))


@pytest.mark.parametrize(
    ("overrides", "workers", "code"),
    [
        ({"debug": True}, 1, "debug.on"),
        ({"trusted_proxies": []}, 1, "proxy.none_trusted"),
        ({"trusted_origins": ["http://app.example.com"]}, 1, "csrf.insecure_origin"),
        ({"database_url": ""}, 4, "db.sqlite_workers"),
        ({"redis_url": "", "session_store": "memory"}, 4, "store.session_memory"),
        ({"redis_url": ""}, 4, "store.ratelimit_memory"),
        ({"registration": "open", "password_min_length": 6}, 1, "registration.weak_policy"),
        ({"access_token_ttl": 86_400}, 1, "jwt.long_access_tokens"),
        ({"redis_url": "redis://cache.internal:6379/0"}, 1, "redis.plaintext"),
        ({"public_url": ""}, 1, "passkeys.no_public_url"),
        ({"webauthn_rp_id": "example.org"}, 1, "passkeys.rp_id_mismatch"),
        ({"webauthn_rp_id": "pp.example.com"}, 1, "passkeys.rp_id_mismatch"),
        ({"oauth_providers": ["corp"], "public_url": ""}, 1, "federation.no_public_url"),
        (
            {"oauth_providers": ["corp"], "public_url": "http://app.example.com"},
            1,
            "federation.insecure_public_url",
        ),
    ],
)
def test_each_deployment_finding(
    tmp_path: Path, overrides: dict[str, Any], workers: int, code: str
) -> None:
    assert code in codes(careful(tmp_path, **overrides), deploy=True, workers=workers)


def test_a_passkey_rp_id_that_is_a_registrable_suffix_of_the_public_host_is_fine(
    tmp_path: Path,
) -> None:
    settings = careful(tmp_path, webauthn_rp_id="example.com")
    assert not {c for c in codes(settings, deploy=True) if c.startswith("passkeys.")}


def test_key_file_readable_by_others_is_reported(tmp_path: Path) -> None:
    settings = careful(tmp_path)
    keys.load_or_create(settings.resolved_jwt_keys_file, "HS256")
    settings.resolved_jwt_keys_file.chmod(0o644)
    assert "jwt.keys_permissions" in codes(settings)


@pytest.mark.usefixtures("umask_022")
def test_data_files_open_to_others_are_reported_with_the_chmod_that_fixes_them(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data dir"  # a space: the fix must be quoted for the shell
    data.mkdir(mode=0o755)
    settings = Settings(data_dir=data)
    settings.secret_bytes()
    keys.load_or_create(settings.resolved_jwt_keys_file, "HS256")
    for name in ("bastion.db", "bastion.db-wal", "bastion.db-shm"):
        (data / name).write_bytes(b"")  # 0644 under this umask, as SQLite made them
    for name in ("secret_key", "jwks.json"):
        (data / name).chmod(0o640)

    found = {(f.code, f.message) for f in find_problems(settings)}

    quoted = f"'{data}"
    assert found == {
        (
            "files.data_dir_permissions",
            f"the data folder {data} is open to other users (mode 0755); fix: chmod 700 {quoted}'",
        ),
        *(
            (
                "files.database_permissions",
                f"the database file {data / name} is open to other users (mode 0644); "
                f"fix: chmod 600 {quoted}/{name}'",
            )
            for name in ("bastion.db", "bastion.db-wal", "bastion.db-shm")
        ),
        (
            "files.secret_permissions",
            f"the generated secret {data / 'secret_key'} is open to other users (mode 0640); "
            f"fix: chmod 600 {quoted}/secret_key'",
        ),
        (
            "jwt.keys_permissions",
            f"the JWT key file {data / 'jwks.json'} is open to other users (mode 0640); "
            f"fix: chmod 600 {quoted}/jwks.json'",
        ),
    }


def test_private_data_files_are_not_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    settings = Settings(data_dir=data)
    settings.secret_bytes()
    keys.load_or_create(settings.resolved_jwt_keys_file, "HS256")
    (data / "bastion.db").touch(mode=0o600)

    assert codes(settings) == set()


def test_a_process_local_session_store_is_reported(tmp_path: Path) -> None:
    found = find_problems(Settings(data_dir=tmp_path, session_store="memory"))

    assert [f.code for f in found] == ["store.session_process_local"]
    assert "sql or redis session store" in found[0].message


def test_short_hmac_key_is_reported(tmp_path: Path) -> None:
    settings = careful(tmp_path)
    path = settings.resolved_jwt_keys_file
    path.write_text(
        json.dumps(
            {
                "signing_kid": "a",
                "keys": [{"kid": "a", "alg": "HS256", "kty": "oct", "k": "c2hvcnQ"}],
            }
        )
    )
    path.chmod(0o600)
    assert "jwt.short_hmac_key" in codes(settings)


def test_critical_findings_come_first(tmp_path: Path) -> None:
    found = find_problems(Settings(data_dir=tmp_path, debug=True), deploy=True)
    severities = [f.severity for f in found]
    assert severities == sorted(severities, key=lambda s: s != "critical")
    assert str(found[0]).startswith("CRITICAL ")
