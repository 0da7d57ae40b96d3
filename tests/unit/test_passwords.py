"""Password hashing: Argon2id parameters, legacy bcrypt, no truncation, timing, async."""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import hmac
import logging
import os
import re
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import argon2
import bcrypt
import pytest

from bastion.passwords import (
    HASHING_NICENESS,
    MAX_PASSWORD_BYTES,
    MAX_PBKDF2_ITERATIONS,
    MIN_MEMORY_COST,
    MIN_PARALLELISM,
    MIN_TIME_COST,
    BcryptScheme,
    DjangoPBKDF2Scheme,
    Passwords,
    PasswordTooLongError,
    default_passwords,
    has_usable_password,
    unusable_password_hash,
)
from tests.users.legacy_hashes import django_pbkdf2

ARGON2ID = re.compile(
    r"\$argon2id\$v=19\$m=(?P<m>\d+),t=(?P<t>\d+),p=(?P<p>\d+)\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}"
)
# Known-answer vectors made by other implementations.
PHP_2Y = ("rasmuslerdorf", "$2y$07$BCryptRequires22Chrcte/VlQH0piJtjXl.0t1XkA8pw9dMXTpOq")
OPENWALL_2A = ("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW")
# "password" in fullwidth forms (U+FF50...): NFKC turns it into plain "password".
FULLWIDTH_PASSWORD = "".join(chr(ord(c) + 0xFEE0) for c in "password")


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    # The defaults are the OWASP minimum and cost ~35 ms here, so no lighter test variant.
    return Passwords()


def bcrypt_hash(password: bytes, prefix: bytes = b"2b") -> str:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=4, prefix=prefix)).decode("ascii")


def params_of(hash: str) -> tuple[int, int, int]:
    match = ARGON2ID.fullmatch(hash)
    assert match is not None, hash
    return int(match["m"]), int(match["t"]), int(match["p"])


@pytest.fixture
def argon2_verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every hash argon2-cffi verifies against, recorded (the real work still runs)."""
    calls: list[str] = []
    real = argon2.PasswordHasher.verify

    def spy(self: argon2.PasswordHasher, hash: str | bytes, password: str | bytes) -> Any:
        calls.append(hash if isinstance(hash, str) else hash.decode())
        return real(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", spy)
    return calls


# -- parameters -----------------------------------------------------------------------------


def test_new_hash_is_argon2id_with_owasp_minimum_parameters(passwords: Passwords) -> None:
    m, t, p = params_of(passwords.hash("correct horse battery staple"))
    assert (m, t, p) == (passwords.memory_cost, passwords.time_cost, passwords.parallelism)
    assert m >= 19_456
    assert t >= 2
    assert p >= 1


def test_stronger_parameters_are_used_in_new_hashes() -> None:
    stronger = Passwords(memory_cost=MIN_MEMORY_COST + 1024, time_cost=3)
    assert params_of(stronger.hash("pw")) == (MIN_MEMORY_COST + 1024, 3, 1)


@pytest.mark.parametrize(
    "weak",
    [
        {"memory_cost": MIN_MEMORY_COST - 1},
        {"time_cost": MIN_TIME_COST - 1},
        {"parallelism": MIN_PARALLELISM - 1},
        {"max_concurrency": 0},
    ],
)
def test_parameters_below_the_minimum_are_refused(weak: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least"):
        Passwords(**weak)


def test_each_hash_has_its_own_salt(passwords: Passwords) -> None:
    first, second = passwords.hash("same"), passwords.hash("same")
    assert first != second
    assert passwords.verify("same", first) == (True, False)
    assert passwords.verify("same", second) == (True, False)


def test_default_instance_is_shared_and_meets_the_minimums() -> None:
    default_passwords.cache_clear()
    try:
        shared = default_passwords()
        assert default_passwords() is shared
        assert shared.memory_cost >= 19_456
        assert shared.time_cost >= 2
    finally:
        default_passwords.cache_clear()


# -- verify and re-hash ---------------------------------------------------------------------


def test_right_password_verifies_without_rehash(passwords: Passwords) -> None:
    assert passwords.verify("s3cret!", passwords.hash("s3cret!")) == (True, False)


def test_wrong_password_fails(passwords: Passwords) -> None:
    assert passwords.verify("s3cret?", passwords.hash("s3cret!")) == (False, False)


@pytest.mark.parametrize(
    ("weak_hasher", "why"),
    [
        (argon2.PasswordHasher(memory_cost=8192, time_cost=2, parallelism=1), "less memory"),
        (argon2.PasswordHasher(memory_cost=MIN_MEMORY_COST, time_cost=1, parallelism=1), "t=1"),
        (
            argon2.PasswordHasher(
                memory_cost=MIN_MEMORY_COST, time_cost=2, parallelism=1, type=argon2.Type.I
            ),
            "argon2i",
        ),
        (
            argon2.PasswordHasher(memory_cost=MIN_MEMORY_COST, time_cost=2, salt_len=8),
            "short salt",
        ),
    ],
)
def test_weaker_argon2_hash_verifies_and_asks_for_rehash(
    passwords: Passwords, weak_hasher: argon2.PasswordHasher, why: str
) -> None:
    weak = weak_hasher.hash("pw")
    assert passwords.verify("pw", weak) == (True, True), why
    assert passwords.needs_rehash(weak)


def test_stronger_argon2_hash_is_kept(passwords: Passwords) -> None:
    # A newer deploy's stronger hash must not be downgraded by an older process.
    stronger = Passwords(memory_cost=MIN_MEMORY_COST + 1024, time_cost=3).hash("pw")
    assert passwords.verify("pw", stronger) == (True, False)


def test_wrong_password_against_weak_hash_does_not_ask_for_rehash(passwords: Passwords) -> None:
    weak = argon2.PasswordHasher(memory_cost=8192, time_cost=1).hash("pw")
    assert passwords.verify("nope", weak) == (False, False)


# -- legacy bcrypt --------------------------------------------------------------------------


def test_bcrypt_hash_verifies_and_asks_for_rehash(passwords: Passwords) -> None:
    legacy = bcrypt_hash(b"hunter2")
    assert passwords.verify("hunter2", legacy) == (True, True)
    assert passwords.verify("hunter3", legacy) == (False, False)


@pytest.mark.parametrize("prefix", [b"2a", b"2b"])
def test_passlib_style_bcrypt_prefixes_verify_and_ask_for_rehash(
    passwords: Passwords, prefix: bytes
) -> None:
    # passlib's bcrypt handler wrote these same strings through the bcrypt library.
    legacy = bcrypt_hash(b"hunter2", prefix)
    assert legacy.startswith(f"${prefix.decode()}$04$")
    assert passwords.verify("hunter2", legacy) == (True, True)


@pytest.mark.parametrize(("password", "legacy"), [PHP_2Y, OPENWALL_2A])
def test_bcrypt_hashes_from_other_implementations_verify(
    passwords: Passwords, password: str, legacy: str
) -> None:
    assert passwords.verify(password, legacy) == (True, True)
    assert passwords.verify(password + "x", legacy) == (False, False)


def test_rehash_after_bcrypt_login_gives_current_argon2id(passwords: Passwords) -> None:
    legacy = bcrypt_hash(b"hunter2")
    ok, needs_rehash = passwords.verify("hunter2", legacy)
    assert ok
    assert needs_rehash
    fresh = passwords.hash("hunter2")
    assert params_of(fresh) == (passwords.memory_cost, passwords.time_cost, 1)
    assert passwords.verify("hunter2", fresh) == (True, False)


def test_password_over_72_bytes_fails_cleanly_against_bcrypt(
    passwords: Passwords, argon2_verify_calls: list[str]
) -> None:
    first_72 = "a" * 72
    legacy = bcrypt_hash(first_72.encode())
    assert passwords.verify(first_72, legacy) == (True, True)
    assert argon2_verify_calls == []
    # bcrypt would ignore byte 73 (bcrypt 5 raises): it must fail, not match the prefix,
    # and still cost a verification rather than answer at once.
    assert passwords.verify(first_72 + "b", legacy) == (False, False)
    assert len(argon2_verify_calls) == 1


def test_legacy_bcrypt_of_unnormalised_password_still_verifies(passwords: Passwords) -> None:
    typed = FULLWIDTH_PASSWORD
    legacy = bcrypt_hash(typed.encode())
    assert passwords.verify(typed, legacy) == (True, True)
    assert passwords.verify(typed, passwords.hash(typed)) == (True, False)


def test_bcrypt_can_be_turned_off() -> None:
    argon2_only = Passwords(legacy_schemes=())
    assert argon2_only.verify("hunter2", bcrypt_hash(b"hunter2")) == (False, False)


# -- Django's formats (legacy, verify only) ------------------------------------------------

# Django's own test vectors (auth_tests/test_hashers.py of Django 1.9, also in the
# djangohashers port): make_password("lètmein", "seasalt", "pbkdf2_sha256") at 24,000
# iterations, and "KRONOS" with pbkdf2_sha1.
DJANGO_PBKDF2_SHA256 = (
    "lètmein",
    "pbkdf2_sha256$24000$seasalt$V9DfCAVoweeLwxC/L2mb+7swhzF0XYdyQMqmusZqiTc=",
)
DJANGO_PBKDF2_SHA1 = ("KRONOS", "pbkdf2_sha1$24000$seasalt$F+kiWNHXbMBcwgxsvSKFCWHnZZ0=")


@pytest.mark.parametrize(("password", "stored"), [DJANGO_PBKDF2_SHA256, DJANGO_PBKDF2_SHA1])
def test_django_pbkdf2_known_vectors_verify_and_ask_for_rehash(
    passwords: Passwords, password: str, stored: str
) -> None:
    assert passwords.verify(password, stored) == (True, True)
    assert passwords.verify(password + "z", stored) == (False, False)
    assert passwords.why_unusable(stored) is None


@pytest.mark.parametrize("digest", ["sha256", "sha1"])
def test_django_pbkdf2_made_like_django_verifies(passwords: Passwords, digest: str) -> None:
    stored = django_pbkdf2("correct horse", digest)
    assert stored.startswith(f"pbkdf2_{digest}$1000$")
    assert passwords.verify("correct horse", stored) == (True, True)
    assert passwords.verify("correct horsE", stored) == (False, False)


def test_django_pbkdf2_digest_is_compared_in_constant_time(
    passwords: Passwords, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert passwords.verify("wrong", DJANGO_PBKDF2_SHA256[1]) == (False, False)
    assert len(compared) == 1
    assert len(compared[0][0]) == len(compared[0][1]) == 32


def test_django_pbkdf2_iterations_above_the_cap_are_refused_without_running(
    monkeypatch: pytest.MonkeyPatch, argon2_verify_calls: list[str]
) -> None:
    capped = Passwords(legacy_schemes=[DjangoPBKDF2Scheme(max_iterations=1000)])
    at_cap = django_pbkdf2("pw")  # 1,000 iterations
    over_cap = at_cap.replace("$1000$", "$1001$")
    assert capped.verify("pw", at_cap) == (True, True)
    runs: list[int] = []
    real = hashlib.pbkdf2_hmac

    def spy(name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
        runs.append(iterations)
        return real(name, password, salt, iterations)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", spy)
    assert capped.verify("pw", over_cap) == (False, False)
    assert runs == []  # refused before any PBKDF2 work; the dummy Argon2 work was done
    assert len(argon2_verify_calls) == 1
    assert "1 to 1,000 iterations" in (capped.why_unusable(over_cap) or "")
    # The default cap allows Django 5.2's and 6.0's counts, not a count of minutes.
    assert MAX_PBKDF2_ITERATIONS == 3_000_000
    default = Passwords()
    assert default.why_unusable(at_cap.replace("$1000$", "$1200000$")) is None
    assert default.why_unusable(at_cap.replace("$1000$", "$3000001$")) is not None


def test_django_bcrypt_sha256_checks_long_passwords_in_full(passwords: Passwords) -> None:
    long = "x" * 100
    prehashed = binascii.hexlify(hashlib.sha256(long.encode()).digest())
    stored = "bcrypt_sha256$" + bcrypt.hashpw(prehashed, bcrypt.gensalt(4)).decode()
    assert passwords.verify(long, stored) == (True, True)
    assert passwords.verify("x" * 99 + "y", stored) == (False, False)


def test_django_bcrypt_verifies_and_keeps_the_72_byte_rule(passwords: Passwords) -> None:
    stored = "bcrypt$" + bcrypt_hash(b"hunter2")
    assert passwords.verify("hunter2", stored) == (True, True)
    assert passwords.verify("hunter3", stored) == (False, False)
    first_72 = "a" * 72
    stored_72 = "bcrypt$" + bcrypt_hash(first_72.encode())
    assert passwords.verify(first_72 + "b", stored_72) == (False, False)


@pytest.mark.parametrize("variant", [argon2.Type.ID, argon2.Type.I])
def test_django_argon2_verifies_and_is_rehashed_into_bastions_format(
    passwords: Passwords, variant: argon2.Type
) -> None:
    # Django stores "argon2" + argon2-cffi's hash (argon2i before Django 3.2).
    inner = argon2.PasswordHasher(memory_cost=MIN_MEMORY_COST, time_cost=2, type=variant)
    stored = "argon2" + inner.hash("hunter2")
    assert passwords.verify("hunter2", stored) == (True, True)
    assert passwords.verify("hunter3", stored) == (False, False)


def test_django_formats_can_be_left_out() -> None:
    bcrypt_only = Passwords(legacy_schemes=[BcryptScheme()])
    assert bcrypt_only.verify(*DJANGO_PBKDF2_SHA256) == (False, False)
    assert "unknown password hash format" in (
        bcrypt_only.why_unusable(DJANGO_PBKDF2_SHA256[1]) or ""
    )


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        (None, "no password hash"),
        ("", "no password hash"),
        ("x" * 513, "longer than 512 characters"),
        ("md5$seasalt$f5d9b6d1b2b8b1a1", "unknown password hash format (known: argon2, bcrypt"),
        ("!" + "a" * 40, "an unusable password"),
        ("$2b$31$" + "a" * 53, "not a valid bcrypt password hash (expected $2a$, $2b$ or $2y$"),
        (
            "pbkdf2_sha256$24000$sea$salt$V9DfCAVoweeLwxC/L2mb+7swhzF0XYdyQMqmusZqiTc=",
            "not a valid django_pbkdf2_sha256 password hash",
        ),
        ("pbkdf2_sha1$24000$seasalt$c2hvcnQ=", "a 20-byte digest in base64"),
        ("bcrypt_sha256$$2x$04$" + "a" * 53, "not a valid django_bcrypt_sha256 password hash"),
        (
            "argon2$argon2id$v=19$m=4294967295,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo",
            "m up to 1048576 KiB",
        ),
    ],
)
def test_why_unusable_names_the_format_and_never_the_hash(
    passwords: Passwords, stored: Any, reason: str
) -> None:
    why = passwords.why_unusable(stored)
    assert why is not None
    assert reason in why
    if isinstance(stored, str) and len(stored) > 12:
        assert stored not in why
        assert stored[-12:] not in why


def test_every_recognised_hash_is_usable(passwords: Passwords) -> None:
    stored = [passwords.hash("pw"), bcrypt_hash(b"pw"), PHP_2Y[1], DJANGO_PBKDF2_SHA1[1]]
    assert [passwords.why_unusable(s) for s in stored] == [None] * 4


# -- no truncation, sizes and Unicode -------------------------------------------------------


def test_100_byte_password_matches_only_in_full(passwords: Passwords) -> None:
    password = "0123456789" * 10
    stored = passwords.hash(password)
    assert passwords.verify(password, stored) == (True, False)
    assert passwords.verify(password[:99], stored) == (False, False)
    assert passwords.verify(password[:99] + "X", stored) == (False, False)


def test_1024_byte_password_is_accepted(passwords: Passwords) -> None:
    password = "€" * (MAX_PASSWORD_BYTES // 3) + "x"  # 3-byte characters: 1024 bytes
    assert len(password.encode()) == MAX_PASSWORD_BYTES
    assert passwords.verify(password, passwords.hash(password)) == (True, False)


@pytest.mark.parametrize("password", ["a" * 1025, "😀" * 257], ids=["ascii", "emoji"])
def test_password_over_1024_bytes_is_refused_by_hash(passwords: Passwords, password: str) -> None:
    with pytest.raises(PasswordTooLongError, match="longer than 1024 bytes"):
        passwords.hash(password)


def test_password_over_1024_bytes_fails_verify_after_dummy_work(
    passwords: Passwords, argon2_verify_calls: list[str]
) -> None:
    stored = passwords.hash("a" * 1024)
    assert passwords.verify("a" * 1025, stored) == (False, False)
    assert len(argon2_verify_calls) == 1  # the dummy verification, not skipped


@pytest.mark.parametrize("password", ["pässwörd", "🔐🦄 moon 月", "пароль", "\u00a0spaced\u00a0"])
def test_multibyte_passwords_verify(passwords: Passwords, password: str) -> None:
    stored = passwords.hash(password)
    assert passwords.verify(password, stored) == (True, False)
    assert passwords.verify(password[:-1], stored) == (False, False)


def test_nfc_and_nfd_forms_of_a_password_both_verify(passwords: Passwords) -> None:
    nfc, nfd = unicodedata.normalize("NFC", "pässwörd"), unicodedata.normalize("NFD", "pässwörd")
    assert nfc != nfd
    assert passwords.verify(nfd, passwords.hash(nfc)) == (True, False)
    assert passwords.verify(nfc, passwords.hash(nfd)) == (True, False)


def test_compatibility_characters_are_folded_by_nfkc(passwords: Passwords) -> None:
    assert passwords.verify("password", passwords.hash(FULLWIDTH_PASSWORD)) == (True, False)


def test_lone_surrogate_is_refused_by_hash_and_fails_verify(passwords: Passwords) -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        passwords.hash("bad\ud800")
    assert passwords.verify("bad\ud800", passwords.hash("bad")) == (False, False)


@pytest.mark.parametrize("not_text", [b"bytes", None, 42])
def test_non_str_password_is_a_type_error(passwords: Passwords, not_text: Any) -> None:
    with pytest.raises(TypeError, match="must be str"):
        passwords.hash(not_text)


# -- garbage hashes -------------------------------------------------------------------------

GARBAGE = [
    None,
    "",
    "garbage",
    "!unusable",
    "$argon2id$",
    "$argon2id$v=19$m=19456,t=2,p=1$bad$bad",
    "$argon2id$v=19$m=19456,t=2,p=1$" + "A" * 22,
    "$2b$12$short",
    "$2x$04$" + "a" * 53,
    "$2b$31$" + "a" * 53,  # cost 2^31 would pin a thread for days
    # absurd parameters: must be refused without trying them
    "$argon2id$v=19$m=4294967295,t=4294967295,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo",
    "$argon2id$v=19$m=19456,t=2,p=1$" + "A" * 5000,
    "pbkdf2_sha256$600000$salt$hash",
    # Django's formats, malformed or beyond the caps
    "pbkdf2_sha256$0$seasalt$V9DfCAVoweeLwxC/L2mb+7swhzF0XYdyQMqmusZqiTc=",
    "pbkdf2_sha256$99999999$seasalt$V9DfCAVoweeLwxC/L2mb+7swhzF0XYdyQMqmusZqiTc=",
    "pbkdf2_sha256$24000$seasalt$V9DfCAVoweeLwxC/L2mb+7swhzF0XYdyQMqmusZqiTc",
    "pbkdf2_sha512$24000$seasalt$V9DfCAVoweeLwxC/L2mb+7swhzF0XYdyQMqmusZqiTc=",
    "bcrypt_sha256$$2b$31$" + "a" * 53,
    "bcrypt$$2b$04$short",
    "argon2$argon2id$v=19$m=4294967295,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo",
    42,
]


@pytest.mark.parametrize("stored", GARBAGE)
def test_garbage_hash_fails_without_exception(
    passwords: Passwords, stored: Any, argon2_verify_calls: list[str]
) -> None:
    assert passwords.verify("password", stored) == (False, False)
    # Whatever was stored, the work of one current-parameter verification was done.
    assert params_of(argon2_verify_calls[-1]) == (passwords.memory_cost, passwords.time_cost, 1)


def test_unrecognised_hash_is_logged_without_its_value(
    passwords: Passwords, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion.security"):
        passwords.verify("password", "not-a-hash-but-a-secret-looking-value")
    assert "not recognised" in caplog.text
    assert "secret-looking" not in caplog.text


def test_garbage_hash_needs_rehash(passwords: Passwords) -> None:
    assert passwords.needs_rehash("garbage")
    assert not passwords.needs_rehash(passwords.hash("pw"))


# -- unknown users --------------------------------------------------------------------------


def test_dummy_verify_runs_one_argon2_verify_with_current_parameters(
    passwords: Passwords, argon2_verify_calls: list[str]
) -> None:
    known = passwords.hash("the password")
    passwords.verify("a guess", known)
    assert passwords.dummy_verify("a guess") is False
    known_call, dummy_call = argon2_verify_calls
    # Same scheme, same parameters, same work as a known user with a wrong password.
    assert params_of(dummy_call) == params_of(known_call)
    assert dummy_call != known_call


def test_dummy_verify_is_false_even_for_common_passwords(passwords: Passwords) -> None:
    assert not any(passwords.dummy_verify(pw) for pw in ["", "password", "123456"])


# -- accounts without a password ------------------------------------------------------------


def test_unusable_password_matches_nothing_after_a_real_verifications_work(
    passwords: Passwords, argon2_verify_calls: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    marker = unusable_password_hash()
    guesses = ["", marker, marker[1:], "password"]
    with caplog.at_level(logging.WARNING, logger="bastion.security"):
        assert all(passwords.verify(guess, marker) == (False, False) for guess in guesses)
    current = (passwords.memory_cost, passwords.time_cost, 1)
    assert [params_of(call) for call in argon2_verify_calls] == [current] * len(guesses)
    # An account without a password is not a corrupt hash: nothing to warn about.
    assert "not recognised" not in caplog.text


def test_unusable_password_markers_are_random_and_told_apart_from_hashes(
    passwords: Passwords,
) -> None:
    first, second = unusable_password_hash(), unusable_password_hash()
    assert first != second
    assert not has_usable_password(first)
    assert not has_usable_password(None)
    assert has_usable_password(passwords.hash("a password"))
    assert has_usable_password(PHP_2Y[1])


async def test_verify_unknown_user_runs_argon2_in_a_worker_thread(
    passwords: Passwords, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    real = argon2.PasswordHasher.verify

    def spy(self: argon2.PasswordHasher, hash: str | bytes, password: str | bytes) -> Any:
        threads.append(threading.current_thread())
        return real(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", spy)
    assert await passwords.verify_unknown_user("whoever") is False
    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()


# -- async ----------------------------------------------------------------------------------


async def test_async_hash_and_verify_round_trip(passwords: Passwords) -> None:
    stored = await passwords.hash_async("async pw")
    assert await passwords.verify_async("async pw", stored) == (True, False)
    assert await passwords.verify_async("other", stored) == (False, False)
    assert await passwords.verify_async("hunter2", bcrypt_hash(b"hunter2")) == (True, True)


async def test_async_hash_refuses_over_long_password(passwords: Passwords) -> None:
    with pytest.raises(PasswordTooLongError):
        await passwords.hash_async("a" * 1025)


@pytest.mark.parametrize("operation", ["hash", "verify"])
async def test_hashing_runs_in_the_pool_while_the_event_loop_serves_other_tasks(
    monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    # How long the loop stalls in practice is measured by bench/event_loop_gap.py.
    loop = asyncio.get_running_loop()
    hashing = asyncio.Event()
    release = threading.Event()  # set only by another task on the event loop
    seen: list[tuple[str, int, bool]] = []
    real = getattr(argon2.PasswordHasher, operation)

    def spy(self: argon2.PasswordHasher, *args: Any, **kwargs: Any) -> Any:
        loop.call_soon_threadsafe(hashing.set)
        # On the loop's thread this would wait in vain: the task that sets it never runs.
        released = release.wait(10)
        seen.append((threading.current_thread().name, threading.get_ident(), released))
        return real(self, *args, **kwargs)

    passwords = Passwords()
    stored = passwords.hash("pw")
    monkeypatch.setattr(argon2.PasswordHasher, operation, spy)

    async def other_task() -> None:
        await hashing.wait()
        release.set()

    work = (
        passwords.hash_async("pw") if operation == "hash" else passwords.verify_async("pw", stored)
    )
    await asyncio.gather(work, other_task())

    [(thread_name, thread_id, released)] = seen
    assert thread_name.startswith("bastion-hash")
    assert thread_id != threading.get_ident()
    assert released


def _count_concurrency(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    lock = threading.Lock()
    running = 0
    peak = 0
    real = argon2.PasswordHasher.hash

    def spy(self: argon2.PasswordHasher, password: str | bytes, **kwargs: Any) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            time.sleep(0.02)  # widen the window in which overlaps would show
            return real(self, password, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(argon2.PasswordHasher, "hash", spy)
    return lambda: peak


@pytest.mark.parametrize("limit", [1, 2])
async def test_concurrent_hashes_are_bounded_by_the_limiter(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    peak = _count_concurrency(monkeypatch)
    limited = Passwords(max_concurrency=limit)
    await asyncio.gather(*(limited.hash_async(f"pw{i}") for i in range(4)))
    assert peak() == limit


def test_default_concurrency_leaves_one_cpu_to_the_event_loop() -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cpus is not None
    assert Passwords().max_concurrency == max(1, cpus - 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
async def test_hashing_threads_run_at_a_lower_priority_than_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []
    real = argon2.PasswordHasher.hash

    def spy(self: argon2.PasswordHasher, password: str | bytes, **kwargs: Any) -> str:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(self, password, **kwargs)

    monkeypatch.setattr(argon2.PasswordHasher, "hash", spy)
    loop_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    await Passwords(max_concurrency=2).hash_async("pw")

    assert seen == [min(19, loop_niceness + HASHING_NICENESS)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_niceness


async def test_a_hash_cancelled_while_queued_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    release = threading.Event()
    loop = asyncio.get_running_loop()
    first_started = asyncio.Event()
    real = argon2.PasswordHasher.hash

    def spy(self: argon2.PasswordHasher, password: str | bytes, **kwargs: Any) -> str:
        started.append(password.decode() if isinstance(password, bytes) else password)
        loop.call_soon_threadsafe(first_started.set)
        release.wait(5)
        return real(self, password, **kwargs)

    monkeypatch.setattr(argon2.PasswordHasher, "hash", spy)
    passwords = Passwords(max_concurrency=1)
    running = asyncio.ensure_future(passwords.hash_async("first"))
    queued = asyncio.ensure_future(passwords.hash_async("second"))
    await first_started.wait()
    queued.cancel()
    release.set()
    await running

    assert started == ["first"]
    assert queued.cancelled()


def test_one_instance_serves_several_event_loops(passwords: Passwords) -> None:
    # The limiter is per event loop, so a shared instance survives loop changes
    # (pytest-asyncio gives each test its own loop; so do reloads).
    async def round_trip() -> bool:
        stored = await passwords.hash_async("pw")
        ok, _ = await passwords.verify_async("pw", stored)
        return ok

    assert asyncio.run(round_trip())
    assert asyncio.run(round_trip())


async def test_login_flow_from_the_docs(passwords: Passwords) -> None:
    # The snippet in docs/passwords.md ("Re-hash on login"), kept runnable here.
    users: dict[str, dict[str, str]] = {"ann": {"password_hash": bcrypt_hash(b"old secret")}}

    async def check_login(username: str, password: str) -> bool:
        user = users.get(username)
        if user is None:
            return await passwords.verify_unknown_user(password)  # same cost, always False
        ok, needs_rehash = await passwords.verify_async(password, user["password_hash"])
        if ok and needs_rehash:
            user["password_hash"] = await passwords.hash_async(password)
        return ok

    assert await check_login("ann", "old secret")
    assert users["ann"]["password_hash"].startswith("$argon2id$")
    assert await check_login("ann", "old secret")
    assert not await check_login("ann", "wrong")
    assert not await check_login("bob", "old secret")
