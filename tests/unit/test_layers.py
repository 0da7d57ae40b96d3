"""The architecture's layer rules, checked in fresh interpreters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "bastion"
CORE = [
    "accounts", "audit", "auth", "cache", "checks", "clock", "csrf", "db", "devices",
    "exceptions", "hooks", "keys", "migrate", "passwords", "policy", "ratelimit", "redirects",
    "recovery", "refresh", "services", "sessions", "settings", "signing", "tokens",
    "stores.base", "stores.memory", "stores.sql", "stores.redis",
    "users.models", "users.repository", "mfa.passkeys", "mfa.passkey_repository",
    "mail", "mail.addresses", "mail.backends", "mail.mailer", "mail.message", "mail.outbox",
    "mail.smtp", "mail.templates", "template_folders", "mfa.pending", "mfa.policy",
    "mfa.secretbox", "mfa.totp", "mfa.recovery_codes", "mfa.repository", "mfa.service",
    "federation.config", "federation.discovery", "federation.errors", "federation.flow",
    "federation.identities", "federation.service", "federation.usernames",
]  # fmt: skip


def imported_frameworks(module: str) -> str:
    code = (
        f"import sys, bastion.{module}; "
        "print(','.join(sorted(m for m in ('fastapi', 'starlette') if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_neither_fastapi_nor_starlette(module: str) -> None:
    assert imported_frameworks(module) == ""


def test_importing_the_package_stays_core_only() -> None:
    code = "import sys, bastion; print('fastapi' in sys.modules, 'starlette' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False False"


def test_only_the_fastapi_package_imports_fastapi() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        # The reference app is a user's app: it builds a FastAPI application itself.
        if path.relative_to(SRC).parts[0] in ("fastapi", "webapp"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "fastapi" or n.startswith("fastapi.") for n in names):
                offenders.append(str(path.relative_to(SRC)))
    # __init__.py re-exports bastion.fastapi lazily (inside __getattr__), not at import time.
    assert offenders == []


def test_asgi_middleware_never_uses_base_http_middleware() -> None:
    for path in [*(SRC / "asgi").glob("*.py"), *(SRC / "fastapi").glob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "starlette.middleware.base", path.name
                assert all(a.name != "BaseHTTPMiddleware" for a in node.names), path.name


def test_reference_app_uses_only_the_public_api() -> None:
    tree = ast.parse((SRC / "webapp" / "app.py").read_text())
    modules = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bastion")
    }
    assert modules <= {"bastion", "bastion.fastapi", "bastion.settings"}
