from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from bastion.exceptions import ConfigError
from bastion.settings import Settings, parse_rate, weak_secret_reason

STRONG = "k3Y-9fQ2mZ7xW1vT8rL4pN6sB0cH5jD2aE"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("BASTION_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file


def test_embedded_default_needs_no_variables(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.env == "development"
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"
    assert settings.store_kind("session") == "sql"
    assert settings.store_kind("cache") == "memory"
    assert settings.store_kind("ratelimit") == "memory"
    assert settings.resolved_jwt_keys_file == tmp_path / "jwks.json"


def test_redis_url_moves_every_concern_to_redis() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6379/0")
    assert {settings.store_kind(c) for c in ("session", "cache", "ratelimit")} == {"redis"}


def test_store_override_per_concern(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("BASTION_CACHE_STORE", "memory")
    settings = Settings()
    assert settings.store_kind("cache") == "memory"
    assert settings.store_kind("session") == "redis"


def test_redis_store_without_url_is_refused() -> None:
    with pytest.raises(ValidationError, match="BASTION_REDIS_URL"):
        Settings(session_store="redis")


def test_csv_variables_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_TRUSTED_PROXIES", "10.0.0.1, 10.0.0.0/8")
    monkeypatch.setenv("BASTION_TRUSTED_ORIGINS", "https://App.Example.com")
    monkeypatch.setenv("BASTION_SECRET_KEY_FALLBACKS", f"{STRONG}a,{STRONG}b")
    settings = Settings()
    assert settings.trusted_proxies == ["10.0.0.1", "10.0.0.0/8"]
    assert settings.trusted_origins == ["https://app.example.com"]
    assert settings.fallback_secret_bytes() == [f"{STRONG}a".encode(), f"{STRONG}b".encode()]


def test_malformed_trusted_origin_is_refused() -> None:
    with pytest.raises(ValidationError, match="scheme://host"):
        Settings(trusted_origins=["example.com/path"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30/minute", (30, 60)), ("5 / second", (5, 1)), ("100/hours", (100, 3600))],
)
def test_rates_parse_to_count_and_window(text: str, expected: tuple[int, int]) -> None:
    assert parse_rate(text) == expected


def test_malformed_rate_is_refused() -> None:
    with pytest.raises(ValidationError, match="30/minute"):
        Settings(login_ip_limit="lots")


def test_absolute_timeout_shorter_than_idle_is_refused() -> None:
    with pytest.raises(ValidationError, match="absolute"):
        Settings(session_idle_timeout=600, session_absolute_timeout=60)


def test_development_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).secret_bytes()
    second = Settings(data_dir=tmp_path).secret_bytes()
    assert first == second
    assert len(first) >= 32
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600


def test_concurrent_first_starts_agree_on_one_secret(tmp_path: Path) -> None:
    starters = 8
    barrier = threading.Barrier(starters)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(timeout=30)  # all read the empty folder as close together as can be
            results.append(Settings(data_dir=tmp_path).secret_bytes())
        except BaseException as exc:  # the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == starters
    assert len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_production_refuses_missing_secret(tmp_path: Path) -> None:
    settings = Settings(env="production", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="required"):
        settings.check_startup()
    with pytest.raises(ConfigError):
        settings.secret_bytes()
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(
    "secret",
    [
        "short",
        "changeme-changeme-changeme-changeme",
        "a" * 64,
        "your-secret-key-here-your-secret-key",
    ],
)
def test_production_refuses_weak_secret(secret: str) -> None:
    settings = Settings(env="production", secret_key=secret)
    with pytest.raises(ConfigError, match="unsafe"):
        settings.check_startup()


def test_production_accepts_strong_secret() -> None:
    settings = Settings(env="production", secret_key=STRONG)
    settings.check_startup()
    assert settings.secret_bytes() == STRONG.encode()
    assert weak_secret_reason(STRONG) is None


def test_secret_never_shows_in_repr() -> None:
    settings = Settings(secret_key=STRONG, secret_key_fallbacks=[STRONG + "old"])
    assert STRONG not in repr(settings)
    assert STRONG not in str(settings.model_dump())
