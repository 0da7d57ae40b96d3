"""`bastion check`: what is unsafe in the current settings.

Plain checks apply everywhere; ``deploy=True`` adds the checks that matter for a production
deployment (Django's ``check --deploy`` in spirit).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from bastion.db import sqlite_file
from bastion.files import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, loose_mode
from bastion.settings import SECRET_FILE_NAME, Settings, weak_secret_reason

Severity = Literal["critical", "warning"]
MIN_HMAC_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper()} {self.code}: {self.message}"


def _secret(settings: Settings, deploy: bool) -> list[Finding]:
    if settings.secret_key is None:
        if deploy or settings.is_production:
            return [
                Finding(
                    "secret.development",
                    "critical",
                    "BASTION_SECRET_KEY is not set: a generated development secret is in use",
                )
            ]
        return []
    reason = weak_secret_reason(settings.secret_key.get_secret_value())
    if reason:
        return [Finding("secret.weak", "critical", f"BASTION_SECRET_KEY is {reason}")]
    return []


def _key_file(settings: Settings) -> list[Finding]:
    path = settings.resolved_jwt_keys_file
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        return [Finding("jwt.keys_unreadable", "critical", "the JWT key file cannot be read")]
    found = _private_file(path, "jwt.keys_permissions", "the JWT key file")
    for key in document.get("keys", []) if isinstance(document, dict) else []:
        if isinstance(key, dict) and key.get("kty") == "oct":
            size = len(str(key.get("k", ""))) * 6 // 8
            if size < MIN_HMAC_KEY_BYTES:
                found.append(
                    Finding(
                        "jwt.short_hmac_key",
                        "critical",
                        f"HS256 key {key.get('kid')} is shorter than 256 bits",
                    )
                )
    return found


def _private_file(path: Path, code: str, what: str) -> list[Finding]:
    mode = loose_mode(path, PRIVATE_FILE_MODE)
    if mode is None:
        return []
    return [
        Finding(
            code,
            "critical",
            f"{what} {path} is open to other users (mode {mode:04o}); "
            f"fix: chmod 600 {shlex.quote(str(path))}",
        )
    ]


def _data_files(settings: Settings) -> list[Finding]:
    """The data folder and what Bastion keeps in it are private to their owner."""
    found: list[Finding] = []
    folder = settings.data_dir
    mode = loose_mode(folder, PRIVATE_DIR_MODE)
    if mode is not None:
        found.append(
            Finding(
                "files.data_dir_permissions",
                "warning",
                f"the data folder {folder} is open to other users (mode {mode:04o}); "
                f"fix: chmod 700 {shlex.quote(str(folder))}",
            )
        )
    database = sqlite_file(settings.resolved_database_url)
    if database is not None:
        for suffix in ("", "-wal", "-shm"):
            path = database.with_name(database.name + suffix)
            found += _private_file(path, "files.database_permissions", "the database file")
    if settings.secret_key is None:
        secret = folder / SECRET_FILE_NAME
        found += _private_file(secret, "files.secret_permissions", "the generated secret")
    return found


def _process_local_sessions(settings: Settings) -> list[Finding]:
    if settings.store_kind("session") != "memory":
        return []
    return [
        Finding(
            "store.session_process_local",
            "warning",
            "sessions live in the server's memory (BASTION_SESSION_STORE=memory): they end "
            "when it restarts, and `bastion users`/`bastion sessions` commands cannot reach "
            "them (they refuse); use the sql or redis session store, or the admin pages",
        )
    ]


def _deployment(settings: Settings, workers: int) -> list[Finding]:
    found: list[Finding] = []
    if not settings.is_production:
        found.append(
            Finding(
                "env.not_production",
                "critical",
                "BASTION_ENV is not production: cookies lack Secure and the __Host- prefix, "
                "and there is no HSTS",
            )
        )
    if settings.debug:
        found.append(Finding("debug.on", "warning", "BASTION_DEBUG is on in a deployment"))
    if not settings.trusted_proxies:
        found.append(
            Finding(
                "proxy.none_trusted",
                "warning",
                "no BASTION_TRUSTED_PROXIES: behind a TLS proxy every client looks like the "
                "proxy (one shared rate limit) and requests look like plain HTTP",
            )
        )
    for origin in settings.trusted_origins:
        if origin.startswith("http://"):
            found.append(
                Finding(
                    "csrf.insecure_origin",
                    "warning",
                    f"trusted origin {origin} is plain HTTP",
                )
            )
    backend = make_url(settings.resolved_database_url).get_backend_name()
    if backend == "sqlite" and workers > 1:
        found.append(
            Finding(
                "db.sqlite_workers",
                "critical",
                f"SQLite with {workers} workers: use PostgreSQL for more than one process",
            )
        )
    elif backend == "sqlite":
        found.append(
            Finding(
                "db.sqlite",
                "warning",
                "SQLite in production: one process on one machine only",
            )
        )
    if workers > 1:
        for concern in ("session", "cache", "ratelimit"):
            if settings.store_kind(concern) == "memory":
                found.append(
                    Finding(
                        f"store.{concern}_memory",
                        "critical" if concern != "cache" else "warning",
                        f"the {concern} store is in process memory, not shared by "
                        f"{workers} workers",
                    )
                )
    if settings.registration == "open" and settings.password_min_length < 8:
        found.append(
            Finding(
                "registration.weak_policy",
                "critical",
                "registration is open with a minimum password length under 8",
            )
        )
    if settings.access_token_ttl > 3600:
        found.append(
            Finding(
                "jwt.long_access_tokens",
                "warning",
                f"access tokens live {settings.access_token_ttl} s (more than an hour)",
            )
        )
    local = ("127.0.0.1", "localhost", "[::1]")
    if settings.redis_url.startswith("redis://") and not any(
        h in settings.redis_url for h in local
    ):
        found.append(
            Finding(
                "redis.plaintext",
                "warning",
                "Redis is reached over the network without TLS (use rediss://)",
            )
        )
    return found


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _email(settings: Settings) -> list[Finding]:
    """Mail in a deployment: really sent, with links to the public site, over TLS."""
    backend = settings.resolved_email_backend
    if backend != "smtp":
        where = "logged" if backend == "console" else "written to the outbox folder"
        return [
            Finding(
                "email.not_sent",
                "warning",
                f"BASTION_EMAIL_BACKEND is {backend}: mail is {where}, not sent, and holds "
                "working reset links; use smtp",
            )
        ]
    found: list[Finding] = []
    if not settings.public_url:
        found.append(
            Finding(
                "email.no_public_url",
                "warning",
                "email is on (smtp) without BASTION_PUBLIC_URL: the links in emails need the "
                "site's public address, e.g. https://app.example.com",
            )
        )
    elif settings.public_url.startswith("http://"):
        found.append(
            Finding(
                "email.insecure_public_url",
                "warning",
                "BASTION_PUBLIC_URL is plain HTTP: links in emails would carry their tokens "
                "unencrypted",
            )
        )
    if settings.smtp_security == "none" and not _is_loopback(settings.smtp_host):
        found.append(
            Finding(
                "email.smtp_plaintext",
                "warning",
                f"mail goes to {settings.smtp_host} without TLS (BASTION_SMTP_SECURITY=none): "
                "reset links and the SMTP password cross the network in clear text; use "
                "starttls or tls",
            )
        )
    return found


def _passkeys(settings: Settings) -> list[Finding]:
    """Passkeys in a deployment need the public origin, and an RP id that covers it."""
    if not settings.public_url:
        return [
            Finding(
                "passkeys.no_public_url",
                "warning",
                "BASTION_PUBLIC_URL is not set: passkeys are unavailable (their origin and "
                "relying-party id come from it, never from a request's Host header)",
            )
        ]
    host = (urlsplit(settings.public_url).hostname or "").lower()
    rp_id = settings.webauthn_rp_id.strip().lower()
    if rp_id and not (host == rp_id or host.endswith("." + rp_id)):
        return [
            Finding(
                "passkeys.rp_id_mismatch",
                "warning",
                f"BASTION_WEBAUTHN_RP_ID {rp_id!r} does not cover the public host {host!r}: "
                "passkeys are unavailable; use the host or a registrable suffix of it",
            )
        ]
    return []


def _federation(settings: Settings) -> list[Finding]:
    """External providers send the browser back to ``<public URL>/login/oauth/<name>/
    callback``; in production without that URL no redirect URI can be trusted."""
    if not settings.oauth_providers:
        return []
    if not settings.public_url:
        return [
            Finding(
                "federation.no_public_url",
                "warning",
                "BASTION_OAUTH_PROVIDERS is set without BASTION_PUBLIC_URL: sign-in with "
                "external providers is unavailable (the redirect URI registered with each "
                "provider is <public URL>/login/oauth/<name>/callback)",
            )
        ]
    if settings.public_url.startswith("http://"):
        return [
            Finding(
                "federation.insecure_public_url",
                "warning",
                "BASTION_PUBLIC_URL is plain HTTP: providers would send authorization codes "
                "to the callback unencrypted",
            )
        ]
    return []


def find_problems(settings: Settings, *, deploy: bool = False, workers: int = 1) -> list[Finding]:
    """Everything unsafe in ``settings``, most severe first."""
    found = (
        _secret(settings, deploy)
        + _key_file(settings)
        + _data_files(settings)
        + _process_local_sessions(settings)
    )
    if deploy:
        found += (
            _deployment(settings, workers)
            + _email(settings)
            + _passkeys(settings)
            + _federation(settings)
        )
    return sorted(found, key=lambda f: (f.severity != "critical", f.code))
