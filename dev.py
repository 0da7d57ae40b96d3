#!/usr/bin/env python3
"""Bootstrap and run Bastion from a fresh clone with nothing but Python 3.11+.

    python3 dev.py demo     # the reference app on the embedded default (SQLite)
    python3 dev.py test     # the whole test suite
    python3 dev.py lint     # ruff check, ruff format --check and mypy --strict (as CI does)
    python3 dev.py docs     # serve the documentation site (mkdocs.yml) at http://127.0.0.1:8000
    python3 dev.py docs build  # build it into site/, failing on any broken link (--strict)
    python3 dev.py translations        # extract messages into src/bastion/locale/*/*.po
    python3 dev.py translations check  # fail on a missing, untranslated or fuzzy message

It keeps a virtual environment in ``.venv`` and reinstalls the project (with its test
extras) only when ``pyproject.toml`` changes. Anything after the command is passed on
(``python3 dev.py test -k csrf``, ``python3 dev.py demo --port 9000``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".bastion-installed"


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit("Bastion needs Python 3.11 or newer")
    if not PYTHON.exists():
        print("creating .venv ...", flush=True)
        try:
            venv.create(VENV, with_pip=True)
        except Exception as error:
            sys.exit(f"could not create .venv ({error}); on Debian: apt-get install python3-venv")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("installing Bastion and its test tools into .venv ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)  # noqa: S603 - our own argv
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)  # noqa: S603
    STAMP.write_text(wanted)


def lint(rest: list[str]) -> int:
    """The checks CI runs before the tests, over the whole repository, with the pinned
    versions of pyproject.toml; the first failure stops."""
    checks = [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy"), *rest],  # files and --strict come from pyproject.toml
    ]
    for check in checks:
        print("$", " ".join(Path(check[0]).name if i == 0 else a for i, a in enumerate(check)))
        status = subprocess.call(check, cwd=ROOT)  # noqa: S603 - our own argv
        if status:
            return status
    return 0


def main(argv: list[str]) -> int:
    commands = {"demo", "test", "lint", "docs", "translations", "serve", "bastion"}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    ensure_environment()
    command, rest = argv[0], argv[1:]
    if command == "test":
        # One worker per core; a module's tests stay together (they share live servers).
        # The slowest tests are listed at the end, to keep the suite's time in view.
        args = [
            *(str(PYTHON), "-m", "pytest", "-n", "auto", "--dist", "loadscope"),
            *("--durations", "20", "--durations-min", "3"),
            *rest,
        ]
    elif command == "lint":
        return lint(rest)
    elif command == "docs":
        os.environ["NO_MKDOCS_2_WARNING"] = "1"  # material's notice about its successor
        if rest[:1] == ["build"]:
            args = [str(PYTHON), "-m", "mkdocs", "build", "--strict", *rest[1:]]
        else:
            args = [str(PYTHON), "-m", "mkdocs", "serve", *rest]
    elif command == "translations":
        args = [str(PYTHON), str(ROOT / "tools" / "translations.py"), *rest]
    elif command == "bastion":
        args = [str(BIN / "bastion"), *rest]
    else:
        args = [str(BIN / "bastion"), command, *rest]
    return subprocess.call(args, cwd=ROOT)  # noqa: S603 - our own argv


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
