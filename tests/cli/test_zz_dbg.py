import pytest
from tests.cli.conftest import Cli

@pytest.mark.backend("postgres")
def test_dbg(cli: Cli, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_DATABASE_URL", fresh_postgres_url)
    import asyncio
    from bastion.migrate import upgrade
    print(cli.invoke("users", "list"))
    asyncio.run(upgrade(fresh_postgres_url))
    print(cli.invoke("users", "list"))
