"""docs/howto/redis-postgresql.md, "Carry the users over": docs/examples/export_bastion_users.py
writes the users of one Bastion database as the file ``bastion users import`` reads, and the
users signed up on the first database sign in on the second with their old passwords, with
their roles, address and active flag."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from bastion.settings import Settings
from bastion.users.importer import import_users, parse_users
from bastion.webapp.app import create_app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "export_bastion_users.py"
PASSWORD = "example password 9"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("export_bastion_users", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def no_bastion_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BASTION_"):
            monkeypatch.delenv(name)


async def test_exported_users_sign_in_on_the_new_database(tmp_path: Path) -> None:
    old = Settings(data_dir=tmp_path / "old")
    old_app = create_app(old)
    async with old_app.router.lifespan_context(old_app):
        accounts = old_app.state.bastion.services.accounts
        await accounts.create_role("staff")
        await accounts.create("alice", PASSWORD, email="alice@example.com", roles=["admin"])
        bob = await accounts.create("bob", PASSWORD, roles=["staff"])
        await accounts.set_active(bob.id, False)
    csv_file = tmp_path / "users.csv"

    needed = load_example().export_users(f"sqlite:///{tmp_path}/old/bastion.db", str(csv_file))

    assert needed == {"admin", "staff"}
    new = Settings(data_dir=tmp_path / "new")
    new_app = create_app(new)
    async with new_app.router.lifespan_context(new_app):
        services = new_app.state.bastion.services
        await services.accounts.create_role("staff")  # "bastion roles create staff"
        report = await import_users(
            parse_users(csv_file.read_bytes(), "csv"),
            users=services.users,
            passwords=services.passwords,
            audit=services.audit,
        )
        assert report.problems == ()
        assert report.imported == 2
        alice = await services.users.get_by_username("alice")
        bob = await services.users.get_by_username("bob")
        assert alice.email == "alice@example.com"
        assert alice.roles == frozenset({"admin"})
        assert bob.roles == frozenset({"staff"})
        assert not bob.is_active
        transport = httpx.ASGITransport(app=new_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            grant = {"grant_type": "password", "username": "alice", "password": PASSWORD}
            signed_in = await client.post("/api/token", data=grant)
            assert signed_in.status_code == 200, signed_in.text
            grant["username"] = "bob"
            assert (await client.post("/api/token", data=grant)).status_code == 400
