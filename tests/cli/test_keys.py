"""``bastion keys ...``: list, rotate, prune on the JWK set file."""

from __future__ import annotations

import json
import stat
import time

import pytest

from bastion import keys
from tests.cli.conftest import KEYS_HEADER, Cli, assert_handled_error, assert_ok, table


def _listed(stdout: str) -> dict[str, list[str]]:
    """``keys list`` rows by kid: kid, alg, created, retired, signing/verify-only."""
    return {row[0]: row for row in table(stdout, KEYS_HEADER)}


def test_list_on_a_fresh_data_dir_creates_one_signing_key(cli: Cli) -> None:
    outcome = cli.invoke("keys", "list")

    assert_ok(outcome)
    rows = _listed(outcome.stdout)
    assert len(rows) == 1
    [(kid, row)] = rows.items()
    assert row[1] == "HS256"
    assert row[3] == "-"
    assert row[4] == "signing"
    path = cli.data_dir / "jwks.json"
    assert keys.load(path).signing_kid == kid
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rotate_adds_a_new_signing_key_and_keeps_the_old_one_for_verification(
    cli: Cli,
) -> None:
    [old_kid] = _listed(cli.invoke("keys", "list").stdout)

    rotated = cli.invoke("keys", "rotate")
    listed = cli.invoke("keys", "list")

    assert_ok(rotated)
    assert_ok(listed)
    rows = _listed(listed.stdout)
    assert len(rows) == 2
    assert [row[4] for row in rows.values()].count("signing") == 1
    [new_kid] = set(rows) - {old_kid}
    assert rows[new_kid][4] == "signing"
    assert rows[old_kid][4] == "verify-only"
    assert rows[old_kid][3] != "-"  # retired when it stopped signing
    assert new_kid in rotated.stdout
    keyset = keys.load(cli.data_dir / "jwks.json")
    assert keyset.signing_kid == new_kid
    assert set(keyset.kids) == {old_kid, new_kid}


def test_rotate_uses_the_configured_algorithm(cli: Cli) -> None:
    cli.invoke("keys", "list")

    outcome = cli.invoke("keys", "rotate", env={"BASTION_JWT_ALGORITHM": "EdDSA"})

    assert_ok(outcome)
    assert "(EdDSA)" in outcome.stdout
    assert keys.load(cli.data_dir / "jwks.json").signing_key.alg == "EdDSA"


def _retire_old_key(cli: Cli, seconds_ago: int) -> tuple[str, str]:
    """A key file with two keys, the old one retired ``seconds_ago``; (old kid, new kid)."""
    path = cli.data_dir / "jwks.json"
    old = keys.load_or_create(path, "HS256")
    new = keys.rotate(path, "HS256")
    document = json.loads(path.read_text())
    for jwk in document["keys"]:
        if jwk["kid"] == old.signing_kid:
            jwk["retired"] = int(time.time()) - seconds_ago
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return old.signing_kid, new.signing_kid


@pytest.mark.parametrize(
    ("seconds_ago", "env", "pruned"),
    [
        pytest.param(0, {}, False, id="just-rotated"),
        pytest.param(300, {}, False, id="within-default-token-lifetime"),
        pytest.param(3600, {}, True, id="past-default-token-lifetime"),
        pytest.param(3600, {"BASTION_ACCESS_TOKEN_TTL": "7200"}, False, id="within-configured"),
    ],
)
def test_prune_removes_only_keys_retired_longer_than_the_token_lifetime(
    cli: Cli, seconds_ago: int, env: dict[str, str], pruned: bool
) -> None:
    old_kid, new_kid = _retire_old_key(cli, seconds_ago)

    outcome = cli.invoke("keys", "prune", env=env)

    assert_ok(outcome)
    keyset = keys.load(cli.data_dir / "jwks.json")
    assert keyset.signing_kid == new_kid
    if pruned:
        assert set(keyset.kids) == {new_kid}
        assert outcome.stdout.strip() == f"removed 1 key(s): {old_kid}"
    else:
        assert set(keyset.kids) == {old_kid, new_kid}
        assert outcome.stdout.strip() == "removed 0 key(s)"


def test_prune_never_removes_the_only_signing_key(cli: Cli) -> None:
    [kid] = _listed(cli.invoke("keys", "list").stdout)

    outcome = cli.invoke("keys", "prune")

    assert_ok(outcome)
    assert keys.load(cli.data_dir / "jwks.json").kids == (kid,)


@pytest.mark.parametrize("command", ["list", "rotate", "prune"])
def test_a_broken_key_file_fails_with_one_line_and_is_left_alone(cli: Cli, command: str) -> None:
    path = cli.data_dir / "jwks.json"
    cli.data_dir.mkdir()
    path.write_text("{not json")
    path.chmod(0o600)

    outcome = cli.invoke("keys", command)

    assert_handled_error(outcome, "not valid JSON")
    assert path.read_text() == "{not json"
