"""Schemathesis over the reference app's /openapi.json, with a valid bearer token.

Every operation the schema declares is called with generated (valid and invalid) input;
no answer may be a 5xx, and every answer must match what the schema declares: its status
code, its content type, its headers and its body. Bounded and derandomized, so a CI run
is quick and reproducible.

The operations come from the app's own OpenAPI document, built at collection time from an
app that is never started (so pytest can name one test per operation); a separate test
checks that the running app serves exactly that document at /openapi.json. Requests go to
the running app in-process through schemathesis' ASGI client, which runs the app's lifespan
on its own event loop and keeps every request on that loop, so the SQL engine and the
stores are never shared across loops. It ends the lifespan after each operation's test and
starts it again with the next request, so sessions live in SQLite, not in memory. The users
are created beforehand by a second instance of the app on the same data folder (same
SQLite file, same secret and key set).

``DELETE /api/sessions/{session_id}`` would end the session of the token it runs with if
the fuzzer fed it that session's id, which it can learn from ``GET /api/sessions`` or
``GET /api/me``: every other operation would then get 401. So DELETE runs as a second
user, with a fresh token per example: the ids the fuzzer has seen belong to the first
user (they must get 404, another user's session), and the deleter's own session ids are
never shown to it.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.hypothesis.builder import ApiOperationMark
from schemathesis.python.asgi import get_client, shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bastion.settings import Settings
from bastion.webapp.app import create_app

PASSWORD = "fuzzing password 7 horses"
USER = "fuzzer"
DELETER = "fuzz-deleter"
ENDS_A_SESSION = "DELETE /api/sessions/{session_id}"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Only its OpenAPI document is used: no lifespan, no data folder written (explicit secret).
_DOCUMENT_APP = create_app(
    Settings(
        env="test",
        secret_key="schema-only-app-secret-" + "x" * 32,
        data_dir=Path(tempfile.gettempdir()) / "bastion-fuzz-schema-unused",
    )
)
schema = schemathesis.openapi.from_dict(_DOCUMENT_APP.openapi())


def fuzz_settings(data_dir: Path) -> Settings:
    return Settings(
        env="test",
        data_dir=data_dir,
        # Sessions in SQLite (the embedded default): schemathesis ends the app's lifespan
        # after each operation's test and starts it again on the next request, and the
        # tokens must outlive that.
        session_store="sql",
        cache_store="memory",
        ratelimit_store="memory",
        # The fuzzer may post the user name it saw in /api/me with random passwords; the
        # back-off and the per-address limit must not lock out the tokens this test needs.
        login_max_failures=1_000_000,
        login_ip_limit="1000000/minute",
    )


async def create_users(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services = app.state.bastion.services
        hashed = await services.passwords.hash_async(PASSWORD)
        for name in (USER, DELETER):
            await services.users.create_user(name, hashed, email=f"{name}@example.com")


def asgi(app: FastAPI) -> Any:
    """``app`` for schemathesis, which types ASGI messages as plain dicts where FastAPI
    uses mappings; the two are the same at run time."""
    return app


@dataclass
class Tokens:
    app: FastAPI
    shared: str

    def issue(self, username: str) -> str:
        with get_client(asgi(self.app)) as client:
            response = client.post(
                "/api/token",
                data={"grant_type": "password", "username": username, "password": PASSWORD},
            )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def for_caller(self, caller: str) -> str:
        # The deleter gets a fresh token per example, so that no example can end the
        # session another example runs with.
        return self.issue(DELETER) if caller == DELETER else self.shared


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    configured = fuzz_settings(tmp_path_factory.mktemp("fuzz") / "data")
    asyncio.run(create_users(configured))
    app = create_app(configured)
    try:
        yield app
    finally:
        shutdown_lifespans()


@pytest.fixture(scope="module")
def tokens(fuzz_app: FastAPI) -> Tokens:
    holder = Tokens(fuzz_app, shared="")
    holder.shared = holder.issue(USER)
    return holder


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize each operation's test with the user who calls it.

    This also gives every operation a node id of its own: schemathesis names its items
    ``test[<operation>]`` but passes the bare function name as ``originalname``, from which
    pytest 9.2 builds the node id unless the item has parameters. Under one shared id,
    xdist ran one of the eight operations and dropped the others without a word
    (tests/every_test_runs.py now fails such a run).
    """
    operation = ApiOperationMark.get(metafunc.function)
    if operation is not None:
        caller = DELETER if operation.label == ENDS_A_SESSION else USER
        metafunc.parametrize("caller", [caller])


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_operations_answer_without_server_errors_and_as_declared(
    case: schemathesis.Case[Any], tokens: Tokens, caller: str
) -> None:
    case.call_and_validate(
        app=tokens.app,
        headers={"Authorization": f"Bearer {tokens.for_caller(caller)}"},
        checks=CHECKS,
    )


def test_running_app_serves_the_fuzzed_openapi_document(fuzz_app: FastAPI) -> None:
    with get_client(asgi(fuzz_app)) as client:
        served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == _DOCUMENT_APP.openapi()


def test_fuzzing_leaves_the_shared_token_usable(fuzz_app: FastAPI, tokens: Tokens) -> None:
    # Runs after the fuzzing above (file order): nothing it did ended the shared session.
    with get_client(asgi(fuzz_app)) as client:
        response = client.get("/api/me", headers={"Authorization": f"Bearer {tokens.shared}"})
    assert response.status_code == 200
    assert response.json()["username"] == USER
