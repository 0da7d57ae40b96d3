"""A real OpenID Connect provider for the tests: tests/oidc/provider.mjs (the npm package
oidc-provider) run by node on a loopback port.

Its npm dependencies are installed by ``npm ci`` from tests/oidc/package-lock.json into
tests/oidc/node_modules (git-ignored) the first time a run needs them, and again only when
the lock file changes; a file lock makes parallel workers (pytest-xdist) install once.
Without node or npm, or without the registry, the tests that need the provider skip locally
and fail under ``CI=true`` (``backend_missing``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import backend_missing

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
MODULES = OIDC_DIR / "node_modules"
# Written after a complete install: the hash of the lock file it installed.
STAMP = MODULES / ".bastion-installed"


def lock_hash() -> str:
    return hashlib.sha256((OIDC_DIR / "package-lock.json").read_bytes()).hexdigest()


def node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        backend_missing("node and npm are needed for the OpenID Connect provider (tests/oidc)")
    assert node is not None
    assert npm is not None
    return node, npm


def install_provider(npm: str) -> None:
    """``npm ci`` once per lock file; other workers wait on the lock and find it done."""
    wanted = lock_hash()
    with open(OIDC_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if STAMP.exists() and STAMP.read_text() == wanted:
            return
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=OIDC_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            backend_missing(f"npm ci in tests/oidc failed (is the npm registry reachable?): {last}")
        STAMP.write_text(wanted)


@dataclass
class OIDCProvider:
    """The running provider: its issuer, and the accounts its login page knows."""

    issuer: str
    accounts_file: Path
    process: subprocess.Popen[bytes]
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_account(
        self,
        login: str,
        *,
        email: str,
        email_verified: bool,
        name: str | None = None,
        preferred_username: str | None = None,
    ) -> None:
        """An account that signs in at the provider's login page as ``login`` (any password);
        its subject is ``login``."""
        self.accounts[login] = {
            "email": email,
            "email_verified": email_verified,
            "name": name or login.title(),
            "preferred_username": preferred_username or login,
        }
        self.accounts_file.write_text(json.dumps(self.accounts))

    def register_client(
        self, redirect_uri: str, *, auth_method: str = "client_secret_basic"
    ) -> tuple[str, str]:
        """A new client for ``redirect_uri`` through dynamic registration: (id, secret)."""
        answer = httpx.post(
            f"{self.issuer}/reg",
            json={
                "redirect_uris": [redirect_uri],
                "response_types": ["code"],
                "grant_types": ["authorization_code"],
                "token_endpoint_auth_method": auth_method,
            },
            timeout=10,
        )
        answer.raise_for_status()
        client = answer.json()
        return client["client_id"], client["client_secret"]


@contextmanager
def oidc_provider(
    workdir: Path, *, exit_after_code: bool = False, claims_in_id_token: bool = False
) -> Iterator[OIDCProvider]:
    """Start the provider (installing it first when needed); stop it afterwards.

    By default the email and profile claims come only from its userinfo endpoint (the
    library's default, OIDC Core 5.4); ``claims_in_id_token`` puts them in the ID token too.
    ``exit_after_code``: it exits by itself once it has sent its first authorization code.
    """
    node, npm = node_tools()
    install_provider(npm)
    accounts_file = workdir / "oidc-accounts.json"
    accounts_file.write_text("{}")
    log = open(workdir / "oidc-provider.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [node, "provider.mjs"],
        cwd=OIDC_DIR,
        env={
            **node_env(),
            "OIDC_ACCOUNTS": str(accounts_file),
            "OIDC_EXIT_AFTER_CODE": "1" if exit_after_code else "",
            "OIDC_CLAIMS_IN_ID_TOKEN": "1" if claims_in_id_token else "",
        },
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # provider.mjs prints it once it listens
        if not first:
            process.wait(timeout=10)
            raise RuntimeError(
                f"the OpenID Connect provider exited with {process.returncode}; "
                f"see {workdir / 'oidc-provider.log'}"
            )
        issuer = json.loads(first)["issuer"]
        discovery = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10)
        discovery.raise_for_status()
        yield OIDCProvider(issuer, accounts_file, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def node_env() -> dict[str, str]:
    """node's environment: PATH and HOME only, nothing of the test run's own settings."""
    return {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
