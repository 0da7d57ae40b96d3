"""No example in the documentation can rot: every Python block of a docs page is included
(pymdownx.snippets, ``--8<--``) from a file under docs/examples/ that a test runs, and the
shell blocks name real settings and real commands. The examples that no other test runs
are run here."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import bcrypt
import httpx
import pytest
import typer.main
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.cache import Cache
from bastion.cli import app as cli_app
from bastion.federation.config import SUFFIXES
from bastion.passwords import Passwords, default_passwords
from bastion.recovery import TokenPathFilter
from bastion.settings import Settings
from bastion.stores import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PASSWORD = "example password 9"
BASE = "http://testserver"

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```", re.S | re.M
)
INCLUDE = re.compile(r'^--8<-- "(?P<path>[^":]+)(?::(?P<section>[a-z][-_0-9a-z]*))?"$')
SECTION = re.compile(r"--8<-- \[(?P<kind>start|end):(?P<name>[a-z][-_0-9a-z]*)\]")
SETTING = re.compile(r"BASTION_[A-Z0-9_]*[A-Z0-9](?P<pattern>_[*<])?")

# Which test runs each example that the pages include (a file, or the folder holding it).
TESTED_BY = {
    "docs/examples/hello_app.py": "tests/unit/test_examples.py",
    "docs/examples/hooks_app.py": "tests/unit/test_hooks.py",
    "docs/examples/protected_pages": "tests/browser/test_app_pages.py",
    "docs/examples/existing_app": "tests/existing_app.py",
    "docs/examples/counting_store.py": "tests/unit/test_docs_store_backend.py",
    "docs/examples/export_bastion_users.py": "tests/unit/test_docs_howto.py",
    "docs/examples/access_log.py": "tests/unit/test_docs_snippets.py",
    "docs/examples/caching": "tests/unit/test_docs_snippets.py",
    "docs/examples/welcome_mail": "tests/unit/test_docs_snippets.py",
    "docs/examples/sensitive_routes.py": "tests/unit/test_docs_snippets.py",
    "docs/examples/passwords_setup.py": "tests/unit/test_docs_snippets.py",
    "docs/examples/legacy_login.py": "tests/unit/test_docs_snippets.py",
    "docs/examples/session_routes.py": "tests/unit/test_docs_snippets.py",
    "docs/examples/page_routes.py": "tests/unit/test_docs_snippets.py",
    "docs/examples/csp_additions.py": "tests/unit/test_docs_snippets.py",
    "docs/examples/shared_database.py": "tests/unit/test_docs_snippets.py",
    "docs/deploy/nginx-location.conf": "tests/scale/test_nginx.py",
}


def pages() -> list[Path]:
    """Every page of the site (examples and deployment files are code, not pages)."""
    return sorted(
        path
        for path in DOCS.rglob("*.md")
        if path.relative_to(DOCS).parts[0] not in ("examples", "deploy")
    )


def fenced_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, body) of every fenced block of a page, indented ones too."""
    return [
        (match.group("info").split()[0] if match.group("info").strip() else "", match["body"])
        for match in FENCE.finditer(path.read_text())
    ]


def sections_of(path: Path) -> set[str]:
    found = [(m["kind"], m["name"]) for m in SECTION.finditer(path.read_text())]
    starts = {name for kind, name in found if kind == "start"}
    ends = {name for kind, name in found if kind == "end"}
    return starts & ends


def runner_of(included: str) -> str | None:
    for example, test in TESTED_BY.items():
        if included == example or included.startswith(example + "/"):
            return test
    return None


def test_every_python_block_is_included_from_a_tested_example() -> None:
    problems = []
    included = 0
    for page in pages():
        name = page.relative_to(ROOT)
        for language, body in fenced_blocks(page):
            lines = [line.strip() for line in body.splitlines() if line.strip()]
            written = not lines or not all(INCLUDE.match(line) for line in lines)
            if language in ("python", "py", "pycon") and written:
                problems.append(f"{name}: a Python block written in the page: {lines[:1]}")
                continue
            for line in lines:
                match = INCLUDE.match(line)
                if match is None:
                    continue
                included += 1
                path, section = match["path"], match["section"]
                if not (ROOT / path).is_file():
                    problems.append(f"{name}: includes {path}, which does not exist")
                elif section and section not in sections_of(ROOT / path):
                    problems.append(f"{name}: {path} has no section {section}")
                elif path.startswith("docs/") and language in ("python", "py"):
                    test = runner_of(path)
                    if test is None or not (ROOT / test).is_file():
                        problems.append(f"{name}: {path} is run by no test (TESTED_BY)")
    assert problems == []
    assert included >= 30


def test_tested_by_names_tests_that_name_their_example() -> None:
    for example, test in TESTED_BY.items():
        text = (ROOT / test).read_text()
        short = Path(example).name.removesuffix(".py").removesuffix(".conf")
        assert short in text, (example, test)


def test_every_bastion_variable_named_in_the_docs_exists() -> None:
    settings = {f"BASTION_{name.upper()}" for name in Settings.model_fields}
    unknown = set()
    for page in pages():
        for match in SETTING.finditer(page.read_text()):
            name = match.group(0).removesuffix(match["pattern"] or "")
            if match["pattern"]:  # a family: BASTION_LOGIN_*, BASTION_OAUTH_<NAME>_...
                known = name.startswith("BASTION_OAUTH") or any(
                    s.startswith(name + "_") for s in settings
                )
            else:
                known = name in settings or (
                    name.startswith("BASTION_OAUTH_")
                    and any(name.endswith("_" + suffix) for suffix in SUFFIXES)
                )
            if not known:
                unknown.add(f"{page.relative_to(ROOT)}: {name}")
    assert sorted(unknown) == []


def command_lines() -> Iterator[tuple[Path, str]]:
    for page in pages():
        for language, body in fenced_blocks(page):
            if language not in ("sh", "console", "bash", "shell"):
                continue
            for line in body.splitlines():
                line = line.strip().removeprefix("$ ")
                if line.startswith(("bastion ", "python3 dev.py ")):
                    yield page, line.split("#", 1)[0].strip()


def inline_commands() -> Iterator[tuple[Path, str]]:
    """``bastion ...`` in the pages' code spans (``bastion users enable/disable`` names two)."""
    for page in pages():
        for match in re.finditer(r"`(bastion [^`]+)`", page.read_text()):
            yield page, " ".join(match.group(1).split())


def test_every_bastion_command_in_the_docs_exists() -> None:
    root: Any = typer.main.get_command(cli_app)
    context = root.context_class(root, info_name="bastion")

    def exists(command: Any, words: list[str]) -> bool:
        if not words or not hasattr(command, "list_commands") or words[0] == "...":
            return True  # a command's own arguments and options follow
        alternatives = re.split(r"[/|]", words[0])
        found = [command.get_command(context, word) for word in alternatives]
        return all(sub is not None and exists(sub, words[1:]) for sub in found)

    lines = [
        (page, line)
        for page, line in [*command_lines(), *inline_commands()]
        if line.startswith("bastion ")
    ]
    unknown = [
        f"{page.relative_to(ROOT)}: {line}"
        for page, line in lines
        if not exists(root, line.split()[1:])
    ]
    assert unknown == []
    assert len(lines) >= 50


def test_every_dev_py_command_in_the_docs_exists() -> None:
    source = (ROOT / "dev.py").read_text()
    listed = re.search(r"commands = \{([^}]*)\}", source)
    assert listed is not None
    commands = set(re.findall(r'"(\w+)"', listed.group(1)))
    used = [line.split()[2] for _, line in command_lines() if line.startswith("python3 dev.py")]
    assert used
    assert sorted(set(used) - commands) == []


# ---- the examples that no other test runs -------------------------------------------


def load(relative: str) -> ModuleType:
    path = EXAMPLES / relative
    name = "docs_example_" + re.sub(r"\W", "_", relative.removesuffix(".py"))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder and no BASTION_* setting of the caller's, for examples that call
    ``install(app)`` as they are imported."""
    for name in list(os.environ):
        if name.startswith("BASTION_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield client


async def bearer(app: FastAPI, client: httpx.AsyncClient, name: str, *roles: str) -> dict[str, str]:
    """A new user's access token, fresh from the password grant."""
    accounts = app.state.bastion.services.accounts
    for role in roles:
        if role != "admin":
            await accounts.create_role(role)
    await accounts.create(name, PASSWORD, roles=roles)
    grant = {"grant_type": "password", "username": name, "password": PASSWORD}
    answer = await client.post("/api/token", data=grant)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@contextmanager
def access_log_filters() -> Iterator[logging.Logger]:
    logger = logging.getLogger("uvicorn.access")
    before = list(logger.filters)
    try:
        yield logger
    finally:
        logger.filters[:] = before


def test_access_log_example_hides_recovery_tokens() -> None:
    with access_log_filters() as logger:
        load("access_log.py")
        [added] = [f for f in logger.filters if isinstance(f, TokenPathFilter)]
        record = logging.LogRecord(
            "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5000", "GET", "/password/reset/secret-token-value", "1.1", 200), None,
        )  # fmt: skip
        assert added.filter(record)
        assert "secret-token-value" not in record.getMessage()


async def test_cached_orders_example_loads_once_per_user(data_dir: Path) -> None:
    example = load("caching/orders.py")
    async with running(example.app) as client:
        headers = await bearer(example.app, client, "carol")
        first = await client.get("/api/orders", headers=headers)
        second = await client.get("/api/orders", headers=headers)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json() == {"page": 1, "orders": []}
        assert len(example.LOADS) == 1
        assert first.headers["cache-control"].startswith("private")
        assert (await client.get("/api/orders")).status_code == 401


async def test_monthly_report_example_builds_once_per_user_and_month() -> None:
    example = load("caching/reports.py")
    cache = Cache(MemoryStore(namespace="docs"))
    first = await example.monthly_report(cache, 7, "2026-01")
    assert await example.monthly_report(cache, 7, "2026-01") == first
    await example.monthly_report(cache, 7, "2026-02")
    await example.monthly_report(cache, 8, "2026-01")
    assert example.BUILT == [(7, "2026-01"), (7, "2026-02"), (8, "2026-01")]


async def test_public_notice_example_needs_a_signed_in_user(data_dir: Path) -> None:
    example = load("caching/notice.py")
    async with running(example.app) as client:
        assert (await client.get("/api/notice")).status_code == 401
        headers = await bearer(example.app, client, "carol")
        answer = await client.get("/api/notice", headers=headers)
        assert answer.json() == {"title": "Shop", "notice": "maintenance on Sunday"}
        assert answer.headers["cache-control"].startswith("public")


async def test_welcome_mail_example_sends_the_applications_own_message(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_EMAIL_BACKEND", "file")
    example = load("welcome_mail/welcome.py")
    async with running(example.app):
        await example.welcome_at_once(example.bastion, "carol", "carol@example.com")
        await example.welcome(example.bastion, "dave", "dave@example.com")
        assert await example.bastion.services.mailer.wait_idle(10)
    mails = [path.read_text() for path in sorted((data_dir / "outbox").glob("*.eml"))]
    assert len(mails) == 2
    assert all("Subject: Welcome to Bastion" in mail for mail in mails)
    assert any("To: carol@example.com" in mail for mail in mails)
    assert any("To: dave@example.com" in mail for mail in mails)


async def test_sensitive_routes_example_admits_a_fresh_sign_in_with_the_role(
    data_dir: Path,
) -> None:
    example = load("sensitive_routes.py")
    async with running(example.app) as client:
        forged = {"Authorization": "Bearer not-a-token"}
        assert (await client.post("/billing/card", headers=forged)).status_code == 401
        carol = await bearer(example.app, client, "carol")
        changed = await client.post("/billing/card", headers=carol)
        assert changed.json() == {"changed_by": "carol"}
        closed = await client.post("/profile/close", headers=carol)
        assert closed.status_code == 303
        assert (await client.post("/api/payouts", headers=carol)).status_code == 403
        finance = await bearer(example.app, client, "fiona", "finance")
        assert (await client.post("/api/payouts", headers=finance)).json() == {"paid": True}


def test_passwords_example_shares_the_process_hasher_and_makes_a_stronger_one() -> None:
    example = load("passwords_setup.py")
    assert example.passwords is default_passwords()
    assert isinstance(example.stronger, Passwords)
    hashed = example.stronger.hash(PASSWORD)
    assert "m=65536,t=3" in hashed
    assert example.stronger.verify(PASSWORD, hashed).ok


async def test_legacy_login_example_replaces_a_bcrypt_hash_at_sign_in() -> None:
    example = load("legacy_login.py")
    old = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    example.users["bob"] = {"password_hash": old}

    assert not await example.check_login("bob", "wrong password")
    assert example.users["bob"]["password_hash"] == old
    assert await example.check_login("bob", PASSWORD)
    assert example.users["bob"]["password_hash"].startswith("$argon2id$")
    assert await example.check_login("bob", PASSWORD)
    assert not await example.check_login("nobody", PASSWORD)


async def test_session_routes_example_answers_by_session_and_role(data_dir: Path) -> None:
    example = load("session_routes.py")
    async with running(example.app) as client:
        assert (await client.get("/reports")).status_code == 401
        assert (await client.get("/greeting")).json() == {"hello": "stranger"}
        assert (await client.get("/admin-only")).status_code == 401
        carol = await bearer(example.app, client, "carol")
        assert (await client.get("/reports", headers=carol)).json() == {"for": "carol"}
        assert (await client.get("/greeting", headers=carol)).json() == {"hello": "carol"}
        assert (await client.get("/admin-only", headers=carol)).status_code == 403
        alice = await bearer(example.app, client, "alice", "admin")
        assert (await client.get("/admin-only", headers=alice)).json() == {"admin": True}


async def test_page_routes_example_sends_browsers_to_sign_in(data_dir: Path) -> None:
    example = load("page_routes.py")
    async with running(example.app) as client:
        page = await client.get("/notes", headers={"Accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/notes"
        assert (await client.get("/notes")).status_code == 401
        carol = await bearer(example.app, client, "carol")
        assert (await client.get("/notes", headers=carol)).text == "<h1>Notes</h1>"
        assert (await client.get("/reports", headers=carol)).status_code == 403
        sam = await bearer(example.app, client, "sam", "staff")
        assert (await client.get("/reports", headers=sam)).text == "<h1>Reports</h1>"


async def test_csp_additions_example_relaxes_only_its_prefix(data_dir: Path) -> None:
    example = load("csp_additions.py")
    async with running(example.app) as client:
        reports = (await client.get("/reports/weekly")).headers["content-security-policy"]
        login = (await client.get("/login")).headers["content-security-policy"]
    assert "https://charts.example" in reports
    assert "https://charts.example" not in login
    assert "youtube" not in reports


async def test_shared_database_example_gives_each_new_account_a_profile(
    data_dir: Path,
) -> None:
    example = load("shared_database.py")
    settings = Settings(data_dir=data_dir, registration="open")
    app = example.create_app(settings)
    engine = app.state.engine
    try:
        async with running(app) as client:
            async with engine.begin() as connection:  # after Bastion's tables: its migrations
                await connection.run_sync(example.Base.metadata.create_all)
            page = await client.get("/register")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            form = {
                "username": "carol",
                "password": PASSWORD,
                "password_confirm": PASSWORD,
                "csrf_token": token.group(1),
            }
            registered = await client.post("/register", data=form, headers={"Origin": BASE})
            assert registered.status_code == 303, registered.text
            async with AsyncSession(engine) as db:
                [profile] = (await db.scalars(select(example.Profile))).all()
            assert profile.display_name == "carol"
    finally:
        await engine.dispose()
