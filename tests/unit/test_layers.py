"""The architecture's layer rules, checked in fresh interpreters.

The core modules are imported one after another in one fresh interpreter (one interpreter
per module took a second each) with a finder that refuses FastAPI and Starlette and records
which core modules were executing when either was asked for: a module that imports one,
directly or through another, is on that stack, and a refused import is not cached, so every
later module importing it is caught again. An import made and caught (``try: import
fastapi``) is recorded too.
"""

from __future__ import annotations

import ast
import json
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


# Run in a fresh interpreter with the core modules as arguments: prints, as JSON, each
# module and the framework imports asked for while it (or a module it imports) executed.
PROBE = """
import importlib, json, sys

asked = {name: [] for name in sys.argv[1:]}
importing = [""]  # the module this loop imports now (its packages run first)

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in ("fastapi", "starlette"):
            return None
        asked[importing[0]].append(name)
        frame = sys._getframe(1)
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module.startswith("bastion.") and module[8:] in asked and module[8:] != importing[0]:
                asked[module[8:]].append(name)
            frame = frame.f_back
        raise ImportError(name + " is refused here")

sys.meta_path.insert(0, Refuse())
for name in list(asked):
    importing[0] = name
    try:
        importlib.import_module("bastion." + name)
    except ImportError:
        pass
print(json.dumps(asked))
"""


def frameworks_asked_for(*modules: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, check=True
    )
    found: dict[str, list[str]] = json.loads(done.stdout)
    return found


@pytest.fixture(scope="module")
def core_imports() -> dict[str, list[str]]:
    return frameworks_asked_for(*CORE)


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_neither_fastapi_nor_starlette(
    module: str, core_imports: dict[str, list[str]]
) -> None:
    assert core_imports[module] == []


def test_the_probe_catches_a_module_importing_a_framework_and_those_importing_it() -> None:
    # bastion.fastapi imports FastAPI; bastion.webapp.app imports bastion.fastapi.
    found = frameworks_asked_for("fastapi.install", "webapp.app", "clock")
    assert found["fastapi.install"] != []
    assert found["webapp.app"] != []
    assert found["clock"] == []


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
