"""`bastion check [--deploy]`: prints findings; --deploy exits 1 when it finds any."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.settings import Settings

BASTION = str(Path(sys.executable).with_name("bastion"))
STRONG = "k3Y-9fQ2mZ7xW1vT8rL4pN6sB0cH5jD2aE"


def run(
    tmp_path: Path, *args: str, command: str = "check", stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    clean.update({"BASTION_DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.run(
        [BASTION, *command.split(), *args],
        env=clean,
        cwd=tmp_path,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_without_deploy_passes_on_the_embedded_default(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result.returncode == 0
    assert "no problems found" in result.stdout


def test_check_deploy_exits_1_and_names_each_problem(tmp_path: Path) -> None:
    result = run(tmp_path, "--deploy", "--workers", "4")
    assert result.returncode == 1
    for code in ("secret.development", "env.not_production", "db.sqlite_workers"):
        assert code in result.stdout
    assert "Traceback" not in result.stderr


def test_check_deploy_passes_a_careful_production_setup(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "--deploy",
        BASTION_ENV="production",
        BASTION_SECRET_KEY=STRONG,
        BASTION_DATABASE_URL="postgresql+asyncpg://bastion@db.internal/bastion",
        BASTION_REDIS_URL="rediss://cache.internal:6380/0",
        BASTION_TRUSTED_PROXIES="10.0.0.0/8",
        BASTION_PUBLIC_URL="https://app.example.com",
    )
    assert result.returncode == 0, result.stdout
    assert "no problems found" in result.stdout


def test_check_with_invalid_settings_is_one_line_exit_1(tmp_path: Path) -> None:
    result = run(tmp_path, BASTION_LOGIN_IP_LIMIT="lots")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")


@pytest.mark.usefixtures("umask_022")
def test_a_data_folder_made_by_bastion_is_private_and_passes_the_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    Settings(data_dir=data).secret_bytes()  # a web start makes the secret first, at import
    created = run(
        tmp_path, "alice", "--password-stdin", command="users create", stdin="maple-syrup-1\n"
    )
    assert created.returncode == 0, created.stderr

    result = run(tmp_path)

    assert result.returncode == 0
    assert "no problems found" in result.stdout
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in data.iterdir()}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert modes == dict.fromkeys(
        ["secret_key", "bastion.db", "bastion.db.lock", "jwks.json"], 0o600
    )
