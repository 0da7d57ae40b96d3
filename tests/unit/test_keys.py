"""The JWK set file: generation, strict loading, atomic writes, rotation, pruning, reloading."""

from __future__ import annotations

import json
import logging
import multiprocessing
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from bastion import keys
from bastion.clock import FakeClock, system_clock
from bastion.exceptions import ConfigError
from bastion.keys import Key, KeyRing, KeySet

NOW = 1_700_000_000
ASYMMETRIC = ("EdDSA", "ES256", "RS256")
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    """3072-bit RSA generation takes a while: once per module."""
    return keys.generate_key("RS256", NOW)


@pytest.fixture
def make_key(rsa_key: Key) -> Callable[[str], Key]:
    def make(alg: str) -> Key:
        return rsa_key if alg == "RS256" else keys.generate_key(alg, NOW)

    return make


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def private_values(key: Key) -> list[str]:
    jwk = key.private_jwk()
    return [jwk[name] for name in PRIVATE_MEMBERS if name in jwk]


def works_together(signer: Key, verifier: Key) -> bool:
    algorithm = get_default_algorithms()[signer.alg]
    signature = algorithm.sign(b"msg", algorithm.prepare_key(signer.signing_key))
    return algorithm.verify(b"msg", algorithm.prepare_key(verifier.verification_key), signature)


# --- generation ---------------------------------------------------------------------------


def test_hs256_key_is_256_random_bits() -> None:
    first, second = keys.generate_key("HS256", NOW), keys.generate_key("HS256", NOW)
    assert isinstance(first.signing_key, bytes)
    assert len(first.signing_key) == 32
    assert first.signing_key != second.signing_key
    assert first.kty == "oct"


def test_asymmetric_keys_have_the_expected_type_and_size(make_key: Callable[[str], Key]) -> None:
    eddsa, es256, rs256 = make_key("EdDSA"), make_key("ES256"), make_key("RS256")
    assert isinstance(eddsa.signing_key, ed25519.Ed25519PrivateKey)
    assert isinstance(es256.signing_key, ec.EllipticCurvePrivateKey)
    assert isinstance(es256.signing_key.curve, ec.SECP256R1)
    assert isinstance(rs256.signing_key, rsa.RSAPrivateKey)
    assert rs256.signing_key.key_size == 3072
    assert (eddsa.kty, es256.kty, rs256.kty) == ("OKP", "EC", "RSA")


def test_kids_are_random_base64url() -> None:
    kids = {keys.generate_key("EdDSA", NOW).kid for _ in range(50)}
    assert len(kids) == 50
    assert all(len(kid) == 22 and kid.replace("-", "").replace("_", "").isalnum() for kid in kids)


def test_unknown_algorithm_is_a_config_error(tmp_path: Path) -> None:
    for algorithm in ("HS512", "none", "PS256", "eddsa"):
        with pytest.raises(ConfigError):
            keys.generate_key(algorithm, NOW)
        with pytest.raises(ConfigError):
            keys.load_or_create(tmp_path / "jwks.json", algorithm)
    assert not (tmp_path / "jwks.json").exists()


def test_key_refuses_material_that_does_not_fit_its_algorithm(
    make_key: Callable[[str], Key],
) -> None:
    eddsa = make_key("EdDSA").signing_key
    for alg, material in [("HS256", b""), ("HS256", b"short"), ("RS256", eddsa), ("ES256", eddsa)]:
        with pytest.raises(ConfigError, match="JWT key"):
            Key("k1", alg, NOW, _material=material)
    with pytest.raises(ConfigError):
        Key("k1", "none", NOW, _material=b"x" * 32)


# --- the file -----------------------------------------------------------------------------


def test_file_format_names_the_signing_key_and_each_key_has_kid_alg_use_iat(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jwks.json"
    keyset = keys.load_or_create(path, "ES256", clock)
    document = json.loads(path.read_text())
    assert set(document) == {"signing_kid", "keys"}
    assert document["signing_kid"] == keyset.signing_kid
    (jwk,) = document["keys"]
    assert jwk["kid"] == keyset.signing_kid
    assert (jwk["alg"], jwk["use"], jwk["iat"], jwk["kty"], jwk["crv"]) == (
        "ES256",
        "sig",
        NOW,
        "EC",
        "P-256",
    )
    assert {"x", "y", "d"} <= set(jwk)
    assert "key_ops" not in jwk


@pytest.mark.parametrize("alg", ["HS256", "EdDSA", "ES256", "RS256"])
def test_saved_key_set_loads_back_with_working_keys(
    tmp_path: Path, alg: str, make_key: Callable[[str], Key]
) -> None:
    original = make_key(alg)
    path = tmp_path / "jwks.json"
    keys.save(path, KeySet((original,), original.kid))
    loaded = keys.load(path)
    assert loaded.kids == (original.kid,)
    assert loaded.signing_key.alg == alg
    assert loaded.signing_key.created_at == NOW
    assert works_together(original, loaded.signing_key)
    assert works_together(loaded.signing_key, original)


def test_first_start_creates_the_file_with_mode_0600(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "data" / "jwks.json"
    keys.load_or_create(path, "HS256", clock)
    assert file_mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["jwks.json"]  # no temp file left


def test_later_starts_reuse_the_file_whatever_the_configured_algorithm(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jwks.json"
    first = keys.load_or_create(path, "HS256", clock)
    before = path.read_bytes()
    again = keys.load_or_create(path, "EdDSA", clock)
    assert again.kids == first.kids
    assert path.read_bytes() == before


def test_broken_file_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text("{oops")
    with pytest.raises(ConfigError):
        keys.load_or_create(path, "HS256")
    assert path.read_text() == "{oops"


def test_unwritable_location_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot be written"):
        keys.load_or_create(blocker / "jwks.json", "HS256")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        keys.load(tmp_path / "absent.json")


def test_concurrent_first_start_in_threads_leaves_one_key_set(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    workers = 16
    barrier = threading.Barrier(workers)
    results: list[KeySet] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            results.append(keys.load_or_create(path, "EdDSA"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    on_disk = keys.load(path)
    assert len(on_disk) == 1
    assert {ks.signing_kid for ks in results} == {on_disk.signing_kid}
    assert [p.name for p in tmp_path.iterdir()] == ["jwks.json"]


def _start_process(path: str, barrier: Any, queue: Any) -> None:
    barrier.wait()
    queue.put(keys.load_or_create(path, "ES256", system_clock).signing_kid)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_concurrent_first_start_in_processes_leaves_one_key_set(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    path = tmp_path / "jwks.json"
    workers = 6
    barrier, queue = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(target=_start_process, args=(str(path), barrier, queue))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    kids = {queue.get(timeout=30) for _ in range(workers)}
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert kids == {keys.load(path).signing_kid}
    assert len(keys.load(path)) == 1


def test_first_start_that_loses_the_race_uses_the_winners_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jwks.json"
    winner = keys.new_key_set("HS256", NOW)
    real_new_key_set = keys.new_key_set

    def slow_new_key_set(algorithm: str, now: float) -> KeySet:
        keys.save(path, winner)  # another process finishes first, while we generate
        return real_new_key_set(algorithm, now)

    monkeypatch.setattr(keys, "new_key_set", slow_new_key_set)
    assert keys.load_or_create(path, "HS256").kids == winner.kids
    assert keys.load(path).kids == winner.kids
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["jwks.json"]


def edited(change: Callable[[dict[str, Any]], object]) -> Callable[[dict[str, Any]], str]:
    """A file text: the valid document after ``change`` (whatever ``change`` returns)."""

    def build(document: dict[str, Any]) -> str:
        change(document)
        return json.dumps(document)

    return build


def _valid_document() -> dict[str, Any]:
    key = keys.generate_key("HS256", NOW)
    return {"signing_kid": key.kid, "keys": [key.private_jwk()]}


def _with_key(jwk: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    def mutate(doc: dict[str, Any]) -> None:
        doc["keys"] = [jwk]
        doc["signing_kid"] = jwk["kid"]

    return mutate


def _asymmetric_jwk(alg: str, **changes: Any) -> dict[str, Any]:
    jwk = keys.generate_key(alg, NOW, kid="k1").private_jwk()
    jwk.update(changes)
    return {k: v for k, v in jwk.items() if v is not None}


def _small_rsa_jwk() -> dict[str, Any]:
    # Deliberately weak: the loader must refuse it.
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    return Key("k1", "RS256", NOW, _material=private).private_jwk()


def _public_only(alg: str) -> dict[str, Any]:
    jwk = keys.generate_key(alg, NOW, kid="k1").private_jwk()
    del jwk["d"]
    return jwk


BROKEN_FILES: list[Any] = [
    pytest.param(lambda doc: "not json", id="not-json"),
    pytest.param(lambda doc: json.dumps([doc]), id="top-level-list"),
    pytest.param(edited(lambda doc: doc.pop("keys")), id="no-keys"),
    pytest.param(edited(lambda doc: doc.update(keys=[])), id="empty-keys"),
    pytest.param(edited(lambda doc: doc.update(keys={})), id="keys-not-a-list"),
    pytest.param(edited(lambda doc: doc.pop("signing_kid")), id="no-signing-kid"),
    pytest.param(edited(lambda doc: doc.update(signing_kid="other")), id="signing-kid-not-in-keys"),
    pytest.param(edited(lambda doc: doc.update(signing_kid=7)), id="signing-kid-not-a-string"),
    pytest.param(edited(lambda doc: doc["keys"].append(dict(doc["keys"][0]))), id="duplicate-kid"),
    pytest.param(edited(lambda doc: doc["keys"].append("key")), id="key-not-an-object"),
    pytest.param(edited(lambda doc: doc["keys"][0].pop("kid")), id="missing-kid"),
    pytest.param(edited(lambda doc: doc["keys"][0].update(kid="")), id="empty-kid"),
    pytest.param(edited(lambda doc: doc["keys"][0].pop("alg")), id="missing-alg"),
    pytest.param(edited(lambda doc: doc["keys"][0].update(alg="HS512")), id="unknown-alg-hs512"),
    pytest.param(edited(lambda doc: doc["keys"][0].update(alg="none")), id="alg-none"),
    pytest.param(
        edited(lambda doc: doc["keys"][0].update(alg="ES256")), id="alg-does-not-match-kty"
    ),
    pytest.param(edited(lambda doc: doc["keys"][0].update(kty="RSA")), id="kty-does-not-match-alg"),
    pytest.param(edited(lambda doc: doc["keys"][0].update(use="enc")), id="use-enc"),
    pytest.param(edited(lambda doc: doc["keys"][0].pop("iat")), id="missing-iat"),
    pytest.param(
        edited(lambda doc: doc["keys"][0].update(iat="2024-01-01")), id="iat-not-a-number"
    ),
    pytest.param(edited(lambda doc: doc["keys"][0].update(iat=True)), id="iat-boolean"),
    pytest.param(edited(lambda doc: doc["keys"][0].update(retired=-1)), id="negative-retired"),
    pytest.param(
        edited(lambda doc: doc["keys"][0].update(k="AAAAAAAAAAAAAAAAAAAAAA")), id="oct-128-bits"
    ),
    pytest.param(edited(lambda doc: doc["keys"][0].pop("k")), id="oct-without-k"),
    pytest.param(edited(lambda doc: doc["keys"][0].update(k="!!!!")), id="oct-k-not-base64url"),
    pytest.param(
        edited(lambda doc: _with_key(_asymmetric_jwk("ES256", crv="P-384"))(doc)),
        id="es256-wrong-curve",
    ),
    pytest.param(
        edited(lambda doc: _with_key(_asymmetric_jwk("EdDSA", crv="Ed448"))(doc)), id="eddsa-ed448"
    ),
    pytest.param(edited(lambda doc: _with_key(_public_only("EdDSA"))(doc)), id="eddsa-public-only"),
    pytest.param(edited(lambda doc: _with_key(_public_only("ES256"))(doc)), id="es256-public-only"),
    pytest.param(
        edited(lambda doc: _with_key(_asymmetric_jwk("EdDSA", d="AAAA"))(doc)),
        id="eddsa-bad-private",
    ),
    pytest.param(edited(lambda doc: _with_key(_small_rsa_jwk())(doc)), id="rsa-1024-bits"),
]


@pytest.mark.parametrize("mutate", BROKEN_FILES)
def test_invalid_key_file_is_refused_with_a_one_line_message_without_key_material(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], str]
) -> None:
    document = _valid_document()
    text = mutate(document)
    path = tmp_path / "jwks.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        keys.load(path)
    message = str(caught.value)
    assert message
    assert "\n" not in message
    assert str(path) not in message
    secrets_in_file = [
        value
        for jwk in (document.get("keys") or [])
        if isinstance(jwk, dict)
        for name, value in jwk.items()
        if name in PRIVATE_MEMBERS and isinstance(value, str) and len(value) > 4
    ]
    assert not any(value in message for value in secrets_in_file)
    assert caught.value.__cause__ is None


def test_group_readable_file_still_loads_but_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jwks.json"
    keys.load_or_create(path, "HS256")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="bastion.security"):
        keys.load(path)
    assert "chmod 600" in caplog.text


# --- rotate and prune ---------------------------------------------------------------------


def test_rotate_adds_a_signing_key_and_keeps_the_old_one_for_verification(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jwks.json"
    old = keys.load_or_create(path, "HS256", clock)
    clock.advance(100)
    rotated = keys.rotate(path, "EdDSA", clock)
    assert rotated.signing_kid != old.signing_kid
    assert set(rotated.kids) == {old.signing_kid, rotated.signing_kid}
    assert rotated.signing_key.alg == "EdDSA"
    assert rotated.signing_key.created_at == NOW + 100
    retired = rotated.get(old.signing_kid)
    assert retired is not None
    assert retired.retired_at == NOW + 100
    assert keys.load(path).kids == rotated.kids
    assert file_mode(path) == 0o600


def test_concurrent_rotations_never_lose_a_key(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    keys.load_or_create(path, "HS256")
    workers = 12
    barrier = threading.Barrier(workers)
    made: list[str] = []

    def rotate() -> None:
        barrier.wait()
        made.append(keys.rotate(path, "HS256").signing_kid)

    threads = [threading.Thread(target=rotate) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    on_disk = keys.load(path)
    assert len(on_disk) == workers + 1
    assert set(made) <= set(on_disk.kids)


def test_prune_removes_keys_retired_longer_than_max_age_and_keeps_the_rest(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jwks.json"
    first = keys.load_or_create(path, "HS256", clock).signing_kid
    clock.advance(1000)
    second = keys.rotate(path, "HS256", clock).signing_kid  # first retires now
    clock.advance(500)
    third = keys.rotate(path, "HS256", clock).signing_kid  # second retires now

    clock.advance(600 + keys.PRUNE_GRACE_SECONDS)  # first retired 1160 s ago, second 660 s
    assert keys.prune(path, 600, clock) == [first]
    assert set(keys.load(path).kids) == {second, third}

    clock.advance(1)
    assert keys.prune(path, 600, clock) == [second]
    assert keys.load(path).kids == (third,)
    assert file_mode(path) == 0o600


def test_prune_counts_age_from_retirement_not_creation(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "jwks.json"
    old = keys.load_or_create(path, "HS256", clock).signing_kid
    clock.advance(365 * 86400)  # an old key that signed until just now
    keys.rotate(path, "HS256", clock)
    clock.advance(60)
    assert keys.prune(path, 600, clock) == []
    assert old in keys.load(path)


def test_prune_never_removes_the_signing_key(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "jwks.json"
    keyset = keys.load_or_create(path, "HS256", clock)
    clock.advance(10 * 365 * 86400)
    assert keys.prune(path, 0, clock) == []
    assert keys.load(path).kids == keyset.kids
    with pytest.raises(ValueError, match="signing key"):
        keyset.without([keyset.signing_kid])


def test_prune_with_nothing_to_remove_leaves_the_file_alone(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jwks.json"
    keys.load_or_create(path, "HS256", clock)
    inode = path.stat().st_ino
    assert keys.prune(path, 600, clock) == []
    assert path.stat().st_ino == inode


def test_key_without_retired_member_counts_as_retired_when_the_newest_key_was_made(
    tmp_path: Path, clock: FakeClock
) -> None:
    old, new = keys.generate_key("HS256", NOW), keys.generate_key("HS256", NOW + 5000)
    path = tmp_path / "jwks.json"
    keys.save(path, KeySet((old, new), new.kid))
    clock.advance(5000 + 600)
    assert keys.prune(path, 600, clock) == []
    clock.advance(keys.PRUNE_GRACE_SECONDS + 1)
    assert keys.prune(path, 600, clock) == [old.kid]


# --- public JWKS --------------------------------------------------------------------------


def test_public_jwks_of_an_hs256_set_is_empty() -> None:
    assert keys.new_key_set("HS256", NOW).public_jwks() == {"keys": []}


def test_public_jwks_publishes_asymmetric_public_parts_only(
    make_key: Callable[[str], Key],
) -> None:
    members = [make_key(alg) for alg in ("HS256", *ASYMMETRIC)]
    keyset = KeySet(tuple(members), members[0].kid)
    published = keyset.public_jwks()["keys"]

    assert [jwk["alg"] for jwk in published] == list(ASYMMETRIC)
    expected = {
        "OKP": {"kid", "alg", "use", "kty", "crv", "x"},
        "EC": {"kid", "alg", "use", "kty", "crv", "x", "y"},
        "RSA": {"kid", "alg", "use", "kty", "n", "e"},
    }
    for jwk in published:
        assert set(jwk) == expected[jwk["kty"]]
        assert jwk["use"] == "sig"
        assert not set(PRIVATE_MEMBERS) & set(jwk)
    text = json.dumps(published)
    assert not any(value in text for key in members for value in private_values(key))


def test_key_ring_serves_the_public_jwks_of_the_file(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "jwks.json"
    ring = KeyRing.load_or_create(path, "EdDSA", clock=clock)
    (jwk,) = ring.public_jwks()["keys"]
    assert jwk["kid"] == ring.current().signing_kid


# --- repr ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS256", "EdDSA", "ES256", "RS256"])
def test_repr_never_shows_secret_material(
    tmp_path: Path, alg: str, make_key: Callable[[str], Key]
) -> None:
    key = make_key(alg)
    keyset = KeySet((key,), key.kid)
    path = tmp_path / "jwks.json"
    keys.save(path, keyset)
    ring = KeyRing(path)
    shown = " ".join(
        [repr(key), str(key), f"{key}", repr(keyset), str(keyset), repr(ring), repr([keyset])]
    )
    assert key.kid in shown
    assert alg in shown
    secret_values = private_values(key)
    assert secret_values
    assert not any(value in shown for value in secret_values)
    if isinstance(key.signing_key, bytes):
        assert repr(key.signing_key) not in shown
        assert key.signing_key.hex() not in shown


# --- KeyRing ------------------------------------------------------------------------------


def test_key_ring_picks_up_a_rotation_after_the_check_interval(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jwks.json"
    ring = KeyRing.load_or_create(path, "HS256", clock=clock, check_interval=5)
    before = ring.current().signing_kid

    rotated = keys.rotate(path, "HS256", clock)  # as `bastion keys rotate` would, elsewhere
    clock.advance(4)
    assert ring.current().signing_kid == before  # not looked at the file yet
    clock.advance(1)
    assert ring.current().signing_kid == rotated.signing_kid
    assert ring.current().get(before) is not None


def test_key_ring_refresh_looks_at_the_file_at_once(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "jwks.json"
    ring = KeyRing.load_or_create(path, "HS256", clock=clock, check_interval=5)
    rotated = keys.rotate(path, "HS256", clock)
    assert ring.refresh().signing_kid == rotated.signing_kid


def test_key_ring_does_not_reread_an_unchanged_file(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jwks.json"
    ring = KeyRing.load_or_create(path, "HS256", clock=clock, check_interval=5)
    loads: list[object] = []
    real = keys._load_stamped

    def counting(*args: Any) -> Any:
        loads.append(args)
        return real(*args)

    monkeypatch.setattr(keys, "_load_stamped", counting)
    for _ in range(5):
        clock.advance(5)
        ring.current()
    assert loads == []


def test_key_ring_reload_reuses_unchanged_keys_and_parses_changed_ones(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jwks.json"
    ring = KeyRing.load_or_create(path, "ES256", clock=clock, check_interval=5)
    old = ring.current().signing_key
    keys.rotate(path, "ES256", clock)
    clock.advance(5)
    reloaded = ring.current().get(old.kid)
    assert reloaded is not None
    assert reloaded.signing_key is old.signing_key  # no second parse of an unchanged key
    assert reloaded.retired_at == NOW

    # Same kid, different material (a hand-made file): the new material must be used.
    impostor = keys.generate_key("ES256", NOW, kid=old.kid)
    keys.save(path, KeySet((impostor,), impostor.kid))
    clock.advance(5)
    assert works_together(impostor, ring.current().signing_key)
    assert not works_together(old, ring.current().signing_key)


def test_key_ring_keeps_the_last_good_set_when_the_file_breaks(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jwks.json"
    ring = KeyRing.load_or_create(path, "HS256", clock=clock, check_interval=5)
    good = ring.current().kids
    path.write_text("{broken")
    clock.advance(5)
    with caplog.at_level(logging.ERROR, logger="bastion.security"):
        assert ring.current().kids == good
    assert "keeping the previous one" in caplog.text

    path.unlink()
    clock.advance(5)
    assert ring.current().kids == good

    rotated = keys.new_key_set("HS256", NOW)
    keys.save(path, rotated)
    clock.advance(5)
    assert ring.current().kids == rotated.kids


def test_key_ring_needs_an_existing_valid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        KeyRing(tmp_path / "absent.json")
