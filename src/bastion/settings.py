"""Every knob Bastion has, in one place.

Each field is read from an environment variable named ``BASTION_<FIELD>`` (or a ``.env``
file). Durations are in seconds, sizes in bytes. The embedded default needs none of them.
"""

from __future__ import annotations

import os
import re
import secrets
import unicodedata
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bastion.db import normalize_url
from bastion.exceptions import ConfigError
from bastion.files import make_private_dir
from bastion.i18n.languages import LANGUAGES, normalize_language

Environment = Literal["development", "production", "test"]
StoreKind = Literal["memory", "sql", "redis"]
EmailVerification = Literal["off", "optional", "required"]
JWTAlgorithm = Literal["HS256", "EdDSA", "ES256", "RS256"]
EmailBackendKind = Literal["console", "file", "smtp"]
SMTPSecurity = Literal["starttls", "tls", "none"]
MFAPolicy = Literal["optional", "admins", "required"]

MIN_SECRET_BYTES = 32
SECRET_FILE_NAME = "secret_key"  # noqa: S105 - a file name, not a secret
# Values people paste from tutorials; refused in production even when long enough.
_PLACEHOLDER_SECRET = re.compile(
    r"(change[-_ ]?me|changeme|secret|example|placeholder|your[-_ ]?secret|insecure|dev)",
    re.IGNORECASE,
)
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*$")
_PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
MAX_SITE_NAME = 100
# Unicode categories and bidi classes no one-line display name may hold: controls, lone
# surrogates, line and paragraph separators, bidi embeddings, overrides and isolates.
_NOT_ONE_LINE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset({"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"})


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def is_one_line(text: str) -> bool:
    """Whether ``text`` is safe as a one-line display name (a title, a mail header)."""
    return not any(
        unicodedata.category(char) in _NOT_ONE_LINE_CATEGORIES
        or unicodedata.bidirectional(char) in _BIDI_CONTROLS
        for char in text
    )


def parse_rate(text: str) -> tuple[int, int]:
    """Parse ``"30/minute"`` into ``(30, 60)``: a count and a window in seconds."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"rate must look like '30/minute', got {text!r}")
    return int(match.group(1)), _PERIOD_SECONDS[match.group(2)]


class Settings(BaseSettings):
    """Bastion's configuration. Field docs name the unit; the env var is ``BASTION_`` + name."""

    model_config = SettingsConfigDict(
        env_prefix="BASTION_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # Values may be secrets or URLs with passwords: errors name the field, never the value.
        hide_input_in_errors=True,
    )

    env: Environment = Field(
        "development",
        description="`production` turns on secure cookies (`__Host-` prefix, Secure), HSTS, "
        "and refuses a missing or weak secret. `test` behaves like development.",
    )
    debug: bool = Field(
        False,
        description="Show more detail in logs and in the command line's error lines "
        "(never in responses).",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Master secret, at least 32 bytes, for HMACs (CSRF, signed values). "
        "Development: generated once and kept in the data folder (mode 0600).",
    )
    secret_key_fallbacks: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated older secrets, accepted for verification only.",
    )
    data_dir: Path = Field(
        Path(".bastion"),
        description="Folder for the embedded SQLite file, the generated secret and the key set "
        "(created 0700, its files 0600).",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy async URL for users, roles, audit log. "
        "Default: sqlite+aiosqlite:///<data dir>/bastion.db. postgres:// and postgresql:// "
        "mean postgresql+asyncpg:// (sslmode= becomes ssl=), sqlite:// means sqlite+aiosqlite://.",
    )
    redis_url: str = Field(
        "",
        description="When set, sessions, cache and rate limits live in Redis "
        "(redis://, rediss://, redis+sentinel://, redis+cluster://).",
    )
    redis_prefix: str = Field(
        "bastion",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Prefix of every Redis key Bastion writes (no braces: they are hash tags).",
    )
    session_store: StoreKind | None = Field(
        None, description="Store for sessions: `redis` with a Redis URL, else `sql`."
    )
    cache_store: StoreKind | None = Field(
        None, description="Store for the cache: `redis` with a Redis URL, else `memory`."
    )
    ratelimit_store: StoreKind | None = Field(
        None, description="Store for rate limits: `redis` with a Redis URL, else `memory`."
    )
    store_timeout: float = Field(
        2.0, gt=0, le=30, description="Seconds before a Redis or database call counts as down."
    )
    redis_local_cache: bool = Field(
        True,
        description="Keep hot session records and cache entries read from Redis in each "
        "process, kept exact by Redis's invalidations (client-side caching) and bypassed "
        "while the invalidation connection is down.",
    )
    redis_local_cache_size: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Most values each process keeps for `redis_local_cache`; the oldest go first.",
    )
    jwt_keys_file: Path | None = Field(
        None,
        description="Private JWK set file shared by all processes. Default <data dir>/jwks.json.",
    )
    jwt_algorithm: JWTAlgorithm = Field(
        "HS256", description="Algorithm for newly generated signing keys."
    )
    jwt_issuer: str = Field("bastion", description="`iss` of access tokens (checked).")
    jwt_audience: str = Field("bastion-api", description="`aud` of access tokens (checked).")
    jwt_leeway: int = Field(
        30, ge=0, le=60, description="Seconds of clock skew allowed on `exp`/`iat`/`nbf`."
    )
    access_token_ttl: int = Field(600, gt=0, description="Access-token lifetime, seconds.")
    refresh_token_ttl: int = Field(
        1_209_600,
        gt=0,
        description="Refresh-token idle lifetime, seconds; each rotation restarts it, "
        "never past the session's absolute end.",
    )
    session_idle_timeout: int = Field(
        1800, gt=0, description="Seconds of inactivity that end a session."
    )
    session_absolute_timeout: int = Field(
        43_200, gt=0, description="Hard end of a session, seconds after sign-in."
    )
    remember_me_timeout: int = Field(
        2_592_000, gt=0, description="Absolute timeout, seconds, of a 'remember me' session."
    )
    remember_me_idle_timeout: int = Field(
        1_209_600,
        gt=0,
        description="Seconds of inactivity that end a 'remember me' session (never past "
        "its absolute timeout).",
    )
    session_touch_interval: int = Field(
        60,
        ge=0,
        description="At most one last-seen write per session per this many seconds; "
        "never more than a quarter of the session's idle timeout, so activity always "
        "keeps a session alive.",
    )
    max_sessions_per_user: int = Field(
        0, ge=0, description="Sessions a user may hold at once (the oldest ends); 0: no limit."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failures per account before back-off starts."
    )
    login_max_backoff: int = Field(
        900, ge=1, description="Longest back-off, seconds (it starts at 1 s and doubles)."
    )
    login_ip_limit: str = Field(
        "30/minute", description="Login attempts per client address, all accounts together."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or networks whose X-Forwarded-For / Forwarded "
        "headers are believed.",
    )
    proxy_header: Literal["x-forwarded-for", "forwarded"] = Field(
        "x-forwarded-for",
        description="Which header the trusted proxies set: X-Forwarded-For (+ "
        "X-Forwarded-Proto) or RFC 7239 Forwarded. Only that one is read.",
    )
    trusted_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated extra origins (scheme://host[:port]) allowed to send "
        "unsafe requests with cookies.",
    )
    registration: Literal["open", "closed"] = Field(
        "closed", description="`open` enables /register."
    )
    registration_ip_limit: str = Field(
        "10/hour",
        description="Registration attempts per client address (IPv6: per /64), counted "
        "before any hashing; bounds probing for taken user names.",
    )
    password_min_length: int = Field(
        8, ge=1, le=1024, description="Minimum password length, characters."
    )
    max_body_size: int = Field(
        65_536, ge=1024, description="Largest request body, bytes, on auth routes (413 above)."
    )
    site_name: str = Field(
        "Bastion",
        description="The site's name in every page title, the header, the error pages, "
        "`/docs`, emails and the TOTP issuer: one line of at most 100 characters.",
    )
    default_language: str = Field(
        "en",
        description="The pages' and emails' language when neither `?lang=`, the "
        "`bastion_lang` cookie, the user's own choice nor the browser's `Accept-Language` "
        "names one Bastion speaks: `en` or `zh-CN`.",
    )
    public_url: str = Field(
        "",
        description="Absolute base of the links in emails, `scheme://host[:port]` (http or "
        "https, no path, query or fragment). Empty: in development, the request's own "
        "origin; production needs it once email is on (`bastion check --deploy`).",
    )
    email_backend: EmailBackendKind | None = Field(
        None,
        description="Where mail goes: `console` (logged with its body and links: "
        "development only), `file` (one .eml per message in <data dir>/outbox/) or `smtp`. "
        "Default: `console` in development, `smtp` in production.",
    )
    email_from: str = Field(
        "Bastion <noreply@localhost>",
        description="Sender (From) of every email: one address, with an optional display name.",
    )
    smtp_host: str = Field("localhost", description="SMTP server host name or address.")
    smtp_port: int = Field(
        587, ge=1, le=65535, description="SMTP server port (587 for STARTTLS, 465 for TLS)."
    )
    smtp_security: SMTPSecurity = Field(
        "starttls",
        description="`starttls` (required: a server that does not offer it is not used), "
        "`tls` (TLS from the first byte, usually port 465) or `none` (plain text: only for a "
        "relay on the same machine).",
    )
    smtp_username: str = Field("", description="User name for SMTP AUTH; empty: no AUTH.")
    smtp_password: SecretStr | None = Field(
        None, description="Password for SMTP AUTH (with `BASTION_SMTP_USERNAME`)."
    )
    smtp_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds each SMTP step (connecting, TLS, each command) may take; one "
        "delivery at most four times that.",
    )
    smtp_ca_file: Path | None = Field(
        None,
        description="PEM file of the certificate authorities trusted for the SMTP server "
        "(a private CA). Default: the system's. Certificates are always verified.",
    )
    email_token_ttl: int = Field(
        3600,
        ge=60,
        le=604_800,
        description="Lifetime of password-reset, e-mail verification and e-mail change links, "
        "seconds (each link also works once only).",
    )
    email_verification: EmailVerification = Field(
        "optional",
        description="`off`; `optional` (registration mails a verification link, sign-in is "
        "allowed meanwhile); `required` (an account with an unverified address gets no "
        "session until the link is followed; registration then asks for an address).",
    )
    password_reset_ip_limit: str = Field(
        "10/hour",
        description="Password-reset requests per client address (IPv6: per /64), page and "
        "API together; past it they get 429.",
    )
    email_link_limit: str = Field(
        "3/hour",
        description="Links of one kind (password reset, verification, address change) mailed "
        "per account or per address asked for; past it requests still get the usual "
        "answer, but nothing is sent (no inbox can be flooded).",
    )

    mfa: MFAPolicy = Field(
        "optional",
        description="Second factors: `optional` (each user chooses), `admins` (required for "
        "role `admin`) or `required` (everyone). A user who must have one and has none "
        "enrols at the next sign-in and can do nothing else until then.",
    )
    reauth_window: int = Field(
        600,
        ge=30,
        le=86_400,
        description="Seconds after a sign-in or re-authentication during which sensitive "
        "actions (password, address and factor changes, signing out everywhere, admin "
        "actions) are allowed; later they ask for the password or a second factor again.",
    )
    oauth_providers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated names of external sign-in providers (OpenID Connect or "
        "GitHub), e.g. `google,github`; each is configured by `BASTION_OAUTH_<NAME>_*` "
        "variables (docs/external-providers.md).",
    )
    webauthn_rp_id: str = Field(
        "",
        description="WebAuthn relying-party id for passkeys: the site's host name or a "
        "registrable suffix of it. Empty: the host of `BASTION_PUBLIC_URL` (in "
        "development, of the request).",
    )

    @field_validator(
        "secret_key_fallbacks",
        "trusted_proxies",
        "trusted_origins",
        "oauth_providers",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalize_url(value) if value else value

    @field_validator(
        "login_ip_limit", "registration_ip_limit", "password_reset_ip_limit", "email_link_limit"
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("default_language")
    @classmethod
    def _default_language(cls, value: str) -> str:
        language = normalize_language(value)
        if language is None:
            raise ValueError(f"default language must be one of {', '.join(LANGUAGES)}")
        return language

    @field_validator("site_name")
    @classmethod
    def _site_name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("site name must not be empty")
        if len(value) > MAX_SITE_NAME:
            raise ValueError(f"site name must be at most {MAX_SITE_NAME} characters")
        if not is_one_line(value):
            # It goes into titles, mail headers and otpauth URIs: no line breaks, no control
            # or bidi-override characters that could forge a header or reorder what is shown.
            raise ValueError("site name must not contain control characters")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as error:
            raise ValueError("public URL has an invalid port") from error
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or not is_one_line(value)
            or any(char.isspace() for char in value)
        ):
            raise ValueError("public URL must look like https://host[:port]")
        if (
            parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or "?" in value
            or "#" in value
        ):
            raise ValueError("public URL must have no path, query or fragment")
        # No trailing slash: links are the URL followed by their path.
        return f"{parts.scheme}://{parts.netloc.lower()}"

    @field_validator("email_from")
    @classmethod
    def _email_from(cls, value: str) -> str:
        from bastion.mail.addresses import MailError, parse_sender

        try:
            parse_sender(value)
        except MailError as error:
            raise ValueError(str(error)) from error
        return value.strip()

    @field_validator("smtp_password", mode="before")
    @classmethod
    def _smtp_password(cls, value: object) -> object:
        return None if value == "" else value  # BASTION_SMTP_PASSWORD= means none

    @field_validator("smtp_host")
    @classmethod
    def _smtp_host(cls, value: str) -> str:
        value = value.strip()
        if not value or not is_one_line(value) or any(char.isspace() for char in value):
            raise ValueError("SMTP host must be a host name or an address")
        return value

    @field_validator("trusted_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"trusted origin must be scheme://host[:port], got {origin!r}")
        return [origin.lower() for origin in value]

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        for name in ("session_store", "cache_store", "ratelimit_store"):
            if getattr(self, name) == "redis" and not self.redis_url:
                raise ValueError(f"{name}=redis needs BASTION_REDIS_URL")
        if self.session_absolute_timeout < self.session_idle_timeout:
            raise ValueError("session_absolute_timeout must be >= session_idle_timeout")
        if bool(self.smtp_username) != (self.smtp_password is not None):
            raise ValueError("smtp_username and smtp_password go together (SMTP AUTH)")
        return self

    # ---- derived values -------------------------------------------------------------

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'bastion.db'}"

    @property
    def resolved_jwt_keys_file(self) -> Path:
        return self.jwt_keys_file or self.data_dir / "jwks.json"

    def store_kind(self, concern: Literal["session", "cache", "ratelimit"]) -> StoreKind:
        chosen: StoreKind | None = getattr(self, f"{concern}_store")
        if chosen is not None:
            return chosen
        if self.redis_url:
            return "redis"
        return "sql" if concern == "session" else "memory"

    @property
    def resolved_email_backend(self) -> EmailBackendKind:
        if self.email_backend is not None:
            return self.email_backend
        return "smtp" if self.is_production else "console"

    @property
    def login_ip_rate(self) -> tuple[int, int]:
        return parse_rate(self.login_ip_limit)

    @property
    def registration_ip_rate(self) -> tuple[int, int]:
        return parse_rate(self.registration_ip_limit)

    @property
    def password_reset_ip_rate(self) -> tuple[int, int]:
        return parse_rate(self.password_reset_ip_limit)

    @property
    def email_link_rate(self) -> tuple[int, int]:
        return parse_rate(self.email_link_limit)

    def secret_bytes(self) -> bytes:
        """The current master secret; generates and keeps one in development."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        if self.is_production:
            raise ConfigError("BASTION_SECRET_KEY is required in production")
        return _load_or_create_dev_secret(self.data_dir).encode()

    def fallback_secret_bytes(self) -> list[bytes]:
        return [s.get_secret_value().encode() for s in self.secret_key_fallbacks]

    def check_startup(self) -> None:
        """Refuse to start with settings that are unsafe in production."""
        if not self.is_production:
            return
        if self.secret_key is None:
            raise ConfigError("BASTION_SECRET_KEY is required in production")
        problem = weak_secret_reason(self.secret_key.get_secret_value())
        if problem:
            raise ConfigError(f"BASTION_SECRET_KEY is unsafe for production: {problem}")


def weak_secret_reason(secret: str) -> str | None:
    """Why ``secret`` is too weak for production, or None when it will do."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"shorter than {MIN_SECRET_BYTES} bytes"
    if _PLACEHOLDER_SECRET.search(secret) and len(set(secret)) < 20:
        return "looks like a placeholder"
    if len(set(secret)) < 8:
        return "too few distinct characters"
    return None


def _load_or_create_dev_secret(data_dir: Path) -> str:
    path = data_dir / SECRET_FILE_NAME
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    make_private_dir(data_dir)
    secret = secrets.token_urlsafe(48)
    # Write a private temp file, then link it into place: when two processes start at once,
    # exactly one link succeeds and the other reads the complete winner.
    tmp = data_dir / f".{SECRET_FILE_NAME}.{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    try:
        os.link(tmp, path)
    except FileExistsError:
        secret = path.read_text().strip()
    finally:
        tmp.unlink()
    return secret


def get_settings() -> Settings:
    """Settings from the environment (and ``.env``)."""
    return Settings()
