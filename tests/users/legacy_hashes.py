"""Password hashes as Django and other systems write them, and export files of users, for
the import tests (tests/users/test_import.py, tests/cli/test_users_import.py)."""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass

import bcrypt

DJANGO_SALT_CHARS = string.ascii_letters + string.digits
# Low costs for the test data; the formats are the real ones.
PBKDF2_ITERATIONS = 1_000
BCRYPT_COST = 4


# -- hashes as Django and other systems write them --------------------------------------------


def django_pbkdf2(password: str, digest: str = "sha256") -> str:
    """What Django's PBKDF2PasswordHasher (PBKDF2SHA1PasswordHasher) stores."""
    salt = "".join(secrets.choice(DJANGO_SALT_CHARS) for _ in range(22))
    raw = hashlib.pbkdf2_hmac(digest, password.encode(), salt.encode(), PBKDF2_ITERATIONS)
    return f"pbkdf2_{digest}${PBKDF2_ITERATIONS}${salt}${base64.b64encode(raw).decode()}"


def plain_bcrypt(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()


def django_bcrypt_sha256(password: str) -> str:
    """What Django's BCryptSHA256PasswordHasher stores."""
    prehashed = binascii.hexlify(hashlib.sha256(password.encode()).digest())
    return "bcrypt_sha256$" + bcrypt.hashpw(prehashed, bcrypt.gensalt(BCRYPT_COST)).decode()


LEGACY_HASHERS = (
    django_pbkdf2,
    plain_bcrypt,
    lambda password: django_pbkdf2(password, "sha1"),
    django_bcrypt_sha256,
)


@dataclass(frozen=True)
class Legacy:
    """A user of the old system: what the export file holds, and the password they know."""

    username: str
    email: str
    password: str
    password_hash: str
    roles: tuple[str, ...]


def legacy_users(count: int, role: str | None = "staff") -> list[Legacy]:
    """``count`` users whose hashes are in turn Django PBKDF2-SHA256, bcrypt, Django
    PBKDF2-SHA1 and Django bcrypt_sha256; every tenth holds ``role`` (when given)."""
    users = []
    for i in range(count):
        password = f"old pässword {i}"
        users.append(
            Legacy(
                username=f"user{i:04d}",
                email=f"user{i:04d}@example.org",
                password=password,
                password_hash=LEGACY_HASHERS[i % len(LEGACY_HASHERS)](password),
                roles=(role,) if role is not None and i % 10 == 0 else (),
            )
        )
    return users


def as_csv(users: Sequence[Legacy]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["username", "email", "password_hash", "roles"])
    writer.writerows([u.username, u.email, u.password_hash, " ".join(u.roles)] for u in users)
    return out.getvalue().encode()


def as_json(users: Sequence[Legacy]) -> bytes:
    items = [
        {
            "username": u.username,
            "email": u.email,
            "password_hash": u.password_hash,
            "roles": list(u.roles),
        }
        for u in users
    ]
    return json.dumps(items).encode()
