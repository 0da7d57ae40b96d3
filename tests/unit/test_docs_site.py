"""The documentation site builds with ``mkdocs build --strict``: no broken link anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_builds_the_site_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (site / "index.html").is_file()
    for page in ("existing-app", "sessions", "settings", "security"):
        assert (site / page / "index.html").is_file(), page
    # The example applications are code the pages quote, not part of the site.
    assert not (site / "examples").exists()
