"""`bastion check [--deploy]`: prints findings; --deploy exits 1 when it finds any."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASTION = str(Path(sys.executable).with_name("bastion"))
STRONG = "k3Y-9fQ2mZ7xW1vT8rL4pN6sB0cH5jD2aE"


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    clean.update({"BASTION_DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.run(
        [BASTION, "check", *args],
        env=clean,
        cwd=tmp_path,
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
    )
    assert result.returncode == 0, result.stdout
    assert "no problems found" in result.stdout


def test_check_with_invalid_settings_is_one_line_exit_1(tmp_path: Path) -> None:
    result = run(tmp_path, BASTION_LOGIN_IP_LIMIT="lots")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")
