"""``bastion serve`` start-up errors and ``bastion demo``'s fresh password.

Serving itself is covered elsewhere; ``demo`` here only runs until it has printed its
account details.
"""

from __future__ import annotations

import queue
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.cli.conftest import BASTION, Cli, Library, assert_handled_error

DEMO_TIMEOUT = 60.0


def test_serve_with_an_unimportable_app_fails_with_one_line(cli: Cli) -> None:
    outcome = cli.script("serve", "--app", "nosuchmodule:app", "--port", str(_free_port()))

    line = assert_handled_error(outcome, "nosuchmodule")
    assert "import" in line.lower()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _demo_details(cli: Cli, log: Path) -> dict[str, str]:
    """Start ``bastion demo``, read its banner up to the password line, then stop it."""
    port = _free_port()
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [str(BASTION), "demo", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=cli.environment(),
            cwd=cli.workdir,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    details: dict[str, str] = {}
    deadline = time.monotonic() + DEMO_TIMEOUT
    try:
        while "password" not in details:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"demo printed no password in {DEMO_TIMEOUT:g} s: {log.read_text()}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"demo ended before printing a password: {log.read_text()}")
            match = re.match(r"\s*(URL|user|password):\s+(\S+)\s*$", line)
            if match:
                details[match.group(1).lower()] = match.group(2)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    details["port"] = str(port)
    return details


@pytest.mark.slow
def test_demo_prints_a_fresh_random_password_each_start(
    cli: Cli, library: Library, tmp_path: Path
) -> None:
    first = _demo_details(cli, tmp_path / "demo-1.log")
    second = _demo_details(cli, tmp_path / "demo-2.log")

    for details in (first, second):
        assert details["url"] == f"http://127.0.0.1:{details['port']}/"
        assert details["user"] == "admin"
        assert len(details["password"]) >= 12
    assert first["password"] != second["password"]
    # The account really has the newest password, and only that one.
    assert library.password_matches("admin", second["password"])
    assert not library.password_matches("admin", first["password"])
    admin = library.user("admin")
    assert admin is not None
    assert "admin" in admin.roles
    assert admin.is_active
