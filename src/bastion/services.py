"""Everything Bastion needs at run time, built once from the settings.

The web layer (``install``) and the CLI both open the same :class:`Services`, so a command
such as ``bastion users disable`` ends sessions exactly the way the web app would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.accounts import Accounts
from bastion.audit import AuditTrail
from bastion.auth import Authenticator
from bastion.cache import Cache
from bastion.clock import Clock, system_clock
from bastion.db import create_engine, same_database
from bastion.exceptions import ConfigError
from bastion.federation.config import load_providers
from bastion.federation.service import Federation
from bastion.files import make_private_dir
from bastion.hooks import Hooks
from bastion.keys import KeyRing
from bastion.mail import Mailer, build_mailer
from bastion.mfa.passkey_repository import PasskeyRepository
from bastion.mfa.passkeys import Passkeys
from bastion.mfa.pending import PendingSignIns
from bastion.mfa.repository import SecondFactorRepository
from bastion.mfa.service import SecondFactors
from bastion.passwords import Passwords
from bastion.ratelimit import AddressLimit, LoginThrottle
from bastion.recovery import LinkKind, LinkTokens, Recovery
from bastion.refresh import RefreshTokens
from bastion.sessions import SessionManager, SessionPolicy
from bastion.settings import Settings, StoreKind
from bastion.stores.base import Store
from bastion.stores.memory import MemoryStore
from bastion.stores.redis import RedisStore, create_redis_client, uses_sentinel
from bastion.stores.redis_tracking import LocalCopies
from bastion.stores.sql import SQLStore
from bastion.tokens import AccessTokenCodec
from bastion.users.repository import UserRepository

_COMPONENT = {"session": "session store", "cache": "cache", "ratelimit": "rate-limit store"}


@dataclass
class Services:
    """Open connections and the objects built on them; close with :meth:`aclose`."""

    settings: Settings
    engine: AsyncEngine
    users: UserRepository
    passwords: Passwords
    sessions: SessionManager
    session_store: Store
    cache_store: Store
    ratelimit_store: Store
    clock: Clock
    keyring: KeyRing
    access_tokens: AccessTokenCodec
    refresh_tokens: RefreshTokens
    audit: AuditTrail
    accounts: Accounts
    authenticator: Authenticator
    cache: Cache
    mailer: Mailer
    recovery: Recovery
    mfa: SecondFactors
    passkeys: Passkeys
    # Two-step sign-ins between the password and the second factor (bastion.mfa.pending).
    pending_sign_ins: PendingSignIns
    # Sign-in with external providers (BASTION_OAUTH_PROVIDERS).
    federation: Federation
    redis: Any | None = None
    # Process-local copies of hot session records and cache entries (redis_local_cache).
    local_copies: LocalCopies | None = None
    hooks: Hooks = field(default_factory=Hooks)
    # False for the application's own engine (``open_services(engine=...)``): its pool is
    # the application's to close.
    owns_engine: bool = True

    async def aclose(self) -> None:
        # Hooks still running may use the stores and the database: they finish first.
        await self.hooks.aclose()
        # Reset requests answered a moment ago still look up their account and mail it.
        await self.recovery.aclose()
        # Mail still queued gets a bounded last chance (it needs none of the stores).
        await self.mailer.aclose()
        await self.federation.aclose()
        for store in (self.session_store, self.cache_store, self.ratelimit_store):
            await store.aclose()
        if self.local_copies is not None:
            await self.local_copies.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.owns_engine:
            await self.engine.dispose()


def session_policy(settings: Settings) -> SessionPolicy:
    return SessionPolicy(
        idle_timeout=settings.session_idle_timeout,
        absolute_timeout=settings.session_absolute_timeout,
        remember_me_timeout=settings.remember_me_timeout,
        remember_me_idle_timeout=settings.remember_me_idle_timeout,
        api_idle_timeout=settings.refresh_token_ttl,
        touch_interval=settings.session_touch_interval,
        max_per_user=settings.max_sessions_per_user,
    )


def is_embedded(settings: Settings) -> bool:
    """True when the database is the local SQLite file (migrated automatically)."""
    return make_url(settings.resolved_database_url).get_backend_name() == "sqlite"


async def migrate_embedded(settings: Settings) -> None:
    """Migrate the embedded SQLite database (``serve`` and ``demo`` do this on start); any
    other database is migrated explicitly with ``bastion db upgrade``."""
    if is_embedded(settings):
        from bastion.migrate import upgrade

        make_private_dir(settings.data_dir)
        await upgrade(settings.resolved_database_url)


async def open_services(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    passwords: Passwords | None = None,
    hooks: Hooks | None = None,
    engine: AsyncEngine | None = None,
    templates_dir: str | Path | None = None,
) -> Services:
    """Connect to the database and stores named by ``settings``; ``hooks`` are the
    application's (the CLI has none); ``templates_dir`` is the application's template
    folder (its ``mail/`` files replace Bastion's mail templates).

    ``engine`` is the application's own engine, to share its pool: it must be the
    database of ``BASTION_DATABASE_URL`` (which ``bastion db upgrade`` and the CLI use),
    and it stays open after :meth:`Services.aclose`.
    """
    hooks = hooks or Hooks()
    settings.check_startup()
    providers = load_providers(settings)
    # Before any connection opens: a mail setting it refuses leaves nothing to close.
    mailer = build_mailer(settings, templates_dir=templates_dir)
    if is_embedded(settings):
        make_private_dir(settings.data_dir)
    owns_engine = engine is None
    if engine is None:
        engine = create_engine(settings.resolved_database_url, timeout=settings.store_timeout)
    else:
        await check_shared_engine(engine, settings.resolved_database_url)
    redis = (
        create_redis_client(settings.redis_url, timeout=settings.store_timeout)
        if settings.redis_url
        else None
    )
    memory_root = MemoryStore(namespace="bastion", clock=clock)
    local_copies = _local_copies(settings, redis)

    def build(concern: str, kind: StoreKind) -> Store:
        component = _COMPONENT[concern]
        if kind == "redis":
            assert redis is not None  # settings refuse a redis store without a URL
            return RedisStore(
                redis,
                namespace=f"{settings.redis_prefix}:{concern}",
                component=component,
                timeout=settings.store_timeout,
                # Counters change on nearly every read: copies of them would not pay.
                local=None if concern == "ratelimit" else local_copies,
            )
        if kind == "sql":
            return SQLStore(
                engine,
                namespace=concern,
                clock=clock,
                component=component,
                timeout=settings.store_timeout,
            )
        return memory_root.child(concern)

    session_store = build("session", settings.store_kind("session"))
    ratelimit_store = build("ratelimit", settings.store_kind("ratelimit"))
    sessions = SessionManager(session_store, session_policy(settings), clock)
    users = UserRepository(engine, clock=clock, timeout=settings.store_timeout)
    passwords = passwords or Passwords()
    audit = AuditTrail(users)
    cache = Cache(build("cache", settings.store_kind("cache")), clock=clock)
    # One limiter for every password check (sign-in and a signed-in user's re-check); the
    # accounts clear its back-off when an operator enables a user or sets a password.
    login_throttle = LoginThrottle.from_settings(ratelimit_store, settings)
    accounts = Accounts(
        users,
        sessions,
        passwords,
        audit,
        password_min_length=settings.password_min_length,
        limiter=login_throttle,
        registration_limit=AddressLimit(
            ratelimit_store,
            *settings.registration_ip_rate,
            what="registration",
            prefix="register:addr",
        ),
        hooks=hooks,
    )
    # Password change, role change, disabling and deletion drop the user's cached entries.
    accounts.on_user_changed.append(cache.invalidate_user)
    keyring = KeyRing.load_or_create(
        settings.resolved_jwt_keys_file, settings.jwt_algorithm, clock=clock
    )
    services = Services(
        settings=settings,
        engine=engine,
        users=users,
        passwords=passwords,
        sessions=sessions,
        session_store=session_store,
        cache_store=cache.store,
        ratelimit_store=ratelimit_store,
        clock=clock,
        keyring=keyring,
        access_tokens=AccessTokenCodec(
            keyring,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=settings.access_token_ttl,
            leeway=settings.jwt_leeway,
            clock=clock,
        ),
        refresh_tokens=RefreshTokens(
            session_store, sessions, ttl=settings.refresh_token_ttl, clock=clock
        ),
        audit=audit,
        accounts=accounts,
        authenticator=Authenticator(
            users,
            passwords,
            audit,
            limiter=login_throttle,
            # SQL sessions share the database, whose failed writes already fail alike.
            session_ready=session_store.ping if settings.store_kind("session") == "redis" else None,
            hooks=hooks,
        ),
        cache=cache,
        mailer=mailer,
        recovery=_recovery(
            settings, users, accounts, mailer, session_store, ratelimit_store, clock
        ),
        mfa=SecondFactors(
            SecondFactorRepository(engine, clock=clock, timeout=settings.store_timeout),
            accounts,
            secret=settings.secret_bytes(),
            fallbacks=settings.fallback_secret_bytes(),
            issuer=settings.site_name,
            clock=clock,
        ),
        pending_sign_ins=PendingSignIns(
            session_store,
            settings.secret_bytes(),
            settings.fallback_secret_bytes(),
            clock=clock,
        ),
        # Challenges live in the session store, which every process shares.
        passkeys=Passkeys(
            PasskeyRepository(users),
            users,
            session_store,
            audit,
            sign_in_limit=AddressLimit(
                ratelimit_store, *settings.login_ip_rate, what="passkey sign-in", prefix="passkey"
            ),
        ),
        # Pending requests live in the session store, which every process shares.
        federation=Federation(
            providers,
            session_store=session_store,
            users=users,
            accounts=accounts,
            audit=audit,
            clock=clock,
        ),
        redis=redis,
        local_copies=local_copies,
        hooks=hooks,
        owns_engine=owns_engine,
    )
    # A right password of a user with a second factor is only the first step of a sign-in.
    services.authenticator.has_second_factor = _has_second_factor(services.mfa)
    return services


def _local_copies(settings: Settings, redis: Any | None) -> LocalCopies | None:
    """One set of local copies per process, for the session records (``s:<key>``) and the
    whole cache, when either lives in Redis and ``redis_local_cache`` is on."""
    if redis is None or not settings.redis_local_cache:
        return None
    if uses_sentinel(redis):
        # After a failover the invalidation connection could stay on the old master (now
        # a replica) while writes go to the new one, and nothing on a subscribed
        # connection can ask which it is: copies there could go stale. Not kept.
        return None
    prefixes: list[str] = []
    if settings.store_kind("session") == "redis":
        prefixes.append(f"{settings.redis_prefix}:session:s:")
    if settings.store_kind("cache") == "redis":
        prefixes.append(f"{settings.redis_prefix}:cache:")
    if not prefixes:
        return None
    return LocalCopies(redis, prefixes, max_entries=settings.redis_local_cache_size)


def _has_second_factor(mfa: SecondFactors) -> Callable[[int], Awaitable[bool]]:
    async def has_second_factor(user_id: int) -> bool:
        return (await mfa.summary(user_id)).has_any

    return has_second_factor


def _recovery(
    settings: Settings,
    users: UserRepository,
    accounts: Accounts,
    mailer: Mailer,
    session_store: Store,
    ratelimit_store: Store,
    clock: Clock,
) -> Recovery:
    """Password resets and address checks by mail. Spent links are remembered in the
    session store, which every process shares (the rate-limit store may be each one's
    own memory)."""
    kinds: tuple[LinkKind, ...] = ("reset", "verify", "change")
    return Recovery(
        users=users,
        accounts=accounts,
        tokens=LinkTokens(
            settings.secret_bytes(),
            settings.fallback_secret_bytes(),
            session_store,
            ttl=settings.email_token_ttl,
            clock=clock,
        ),
        mailer=mailer,
        store=session_store,
        request_limit=AddressLimit(
            ratelimit_store,
            *settings.password_reset_ip_rate,
            what="password reset request",
            prefix="reset:addr",
        ),
        link_limits={
            kind: AddressLimit(
                ratelimit_store,
                *settings.email_link_rate,
                what=f"{kind} mail",
                prefix=f"mail:{kind}",
            )
            for kind in kinds
        },
        verification=settings.email_verification,
    )


async def check_shared_engine(engine: AsyncEngine, database_url: str) -> None:
    """Refuse an application's engine that Bastion cannot use as its own: one on another
    database than ``database_url`` (Bastion would read tables that its migrations never
    made), or a SQLite engine that leaves foreign keys off (deleting a user would leave
    its role links and audit references behind)."""
    if not same_database(engine.url, database_url):
        raise ConfigError(
            "the engine given to Bastion is not on the database of BASTION_DATABASE_URL; "
            "set BASTION_DATABASE_URL to the engine's database (`bastion db upgrade` and "
            "the CLI use it)"
        )
    if engine.dialect.name == "sqlite":
        async with engine.connect() as connection:
            enforced = await connection.scalar(text("PRAGMA foreign_keys"))
        if not enforced:
            raise ConfigError(
                "the SQLite engine given to Bastion leaves foreign keys off: make it with "
                "bastion.db.create_engine, or run PRAGMA foreign_keys=ON on each connect"
            )
