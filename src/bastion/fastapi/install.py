"""``install(app, settings)``: everything Bastion adds to a FastAPI application."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Scope

from bastion.accounts import Accounts
from bastion.asgi.csrf import CSRFMiddleware
from bastion.asgi.headers import CSPAdditions, SecurityHeadersMiddleware
from bastion.asgi.language import LanguageMiddleware
from bastion.asgi.limits import BodyLimitMiddleware, HeaderLimitMiddleware
from bastion.asgi.proxy import ProxyHeadersMiddleware
from bastion.asgi.sessions import CookiePolicy, SessionMiddleware, session_state
from bastion.audit import AuditTrail
from bastion.auth import Authenticator
from bastion.exceptions import StoreUnavailable, TokenError
from bastion.fastapi.dependencies import (
    Principal,
    client_ip,
    get_bastion,
    principal_from_session,
)
from bastion.fastapi.errors import ErrorRenderer, register_error_handlers
from bastion.fastapi.route_group import RouteGroup
from bastion.fastapi.templating import Templates
from bastion.hooks import Channel, Hooks
from bastion.services import Services, migrate_embedded, open_services
from bastion.sessions import Session, SessionKind, SessionManager
from bastion.settings import Settings
from bastion.signing import Signer
from bastion.users.repository import UserRecord

log = logging.getLogger("bastion.security")
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_PATH = "/_bastion/static"
# Routes Bastion owns: bodies over the limit get 413 before anything parses them.
AUTH_PREFIXES = (
    "/login",
    "/logout",
    "/register",
    "/account",
    "/reauth",
    "/admin",
    "/api/",
    "/password/",
    "/email/",
)
# The token endpoints are not cookie-authenticated, so CSRF does not apply (RFC 6749 clients
# and Swagger UI post there without a session); nor do the reset API's, whose requests
# carry their own proof (an address that gets the mail, a mailed token) and no cookie's.
CSRF_EXEMPT = frozenset(
    {"/api/token", "/api/token/revoke", "/api/password/forgot", "/api/password/reset"}
)
# Request headers above this total (names and values) get 431; browsers and proxies stay
# far below it (nginx's default allows about 32 KiB).
MAX_HEADER_BYTES = 64 * 1024
# Probes answer without loading the session, so a browser's cookie cannot turn /healthz
# into a 503 or hide /readyz's report behind "session store unavailable".
PROBE_PATHS = frozenset({"/healthz", "/readyz"})


class Bastion:
    """Bastion's state inside one application: settings, services, renderers."""

    def __init__(
        self,
        settings: Settings,
        *,
        templates_dir: str | Path | None = None,
        hooks: Hooks | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        self.settings = settings
        self.hooks = hooks or Hooks()
        self.engine = engine  # the application's, shared; None: Bastion opens its own
        self.cookies = CookiePolicy.for_environment(settings.is_production)
        self.presession_signer = Signer(
            settings.secret_bytes(),
            settings.fallback_secret_bytes(),
            purpose="bastion.presession",
        )
        self.templates_dir = templates_dir  # also the mail templates' (under mail/)
        self.templates = Templates(templates_dir, site_name=settings.site_name)
        self.errors = ErrorRenderer(self.templates, default_language=settings.default_language)
        self._services: Services | None = None
        self._starting = asyncio.Lock()

    @property
    def services(self) -> Services:
        if self._services is None:
            raise StoreUnavailable("application", "Bastion has not started")
        return self._services

    def session_manager(self) -> SessionManager:
        return self.services.sessions

    async def startup(self) -> None:
        async with self._starting:
            if self._services is not None:
                return
            await migrate_embedded(self.settings)
            self._services = await open_services(
                self.settings,
                hooks=self.hooks,
                engine=self.engine,
                templates_dir=self.templates_dir,
            )

    async def shutdown(self) -> None:
        if self._services is not None:
            await self._services.aclose()
            self._services = None

    async def verify_bearer(self, token: str) -> Principal | None:
        """The principal of a valid access token whose session is still live, else None.

        The session read is the second factor of "JWT + session": logout, revocation,
        password change and disabling a user refuse the token at once, on every process.
        """
        services = self.services
        try:
            claims = services.access_tokens.decode(token)
        except TokenError as error:
            log.info("bearer token refused: %s", error.reason)
            return None
        session = await services.sessions.get(claims.sid)
        if session is None or str(session.user_id) != claims.sub:
            log.info("bearer token refused: session ended or user mismatch")
            return None
        session = await services.sessions.touch(session)
        return principal_from_session(session, via="bearer")

    async def start_session(
        self,
        request: Request,
        user: UserRecord,
        *,
        kind: SessionKind = "browser",
        remember: bool = False,
        replaces: str | None = None,
        channel: Channel | None = None,
        method: str = "password",
        amr: Sequence[str] = ("pwd",),
        mfa_enrolment: bool = False,
    ) -> tuple[str, Session]:
        """A new session for ``user`` signed in by ``request``; with ``channel``, the sign-in
        (by ``method``) is also recorded as ``login.success`` and reaches the hooks.
        ``amr`` names the methods the user proved themselves with (RFC 8176);
        ``mfa_enrolment`` makes a session that may only set up a second factor
        (``BASTION_MFA``, see :mod:`bastion.fastapi.two_step`).

        Every session starts here, so this is where ``BASTION_EMAIL_VERIFICATION=required``
        holds back an account whose address is not verified
        (:class:`bastion.recovery.EmailNotVerified`)."""
        ip = client_ip(request)
        user_agent = request.headers.get("user-agent")
        await self.services.recovery.require_verified(
            user, ip=ip, user_agent=user_agent, channel=channel or "web"
        )
        raw_id, session = await self.services.sessions.create(
            user.id,
            username=user.username,
            email=user.email,
            email_verified=user.email_verified,
            roles=user.roles,
            kind=kind,
            remember=remember,
            ip=ip,
            user_agent=user_agent,
            replaces=replaces,
            amr=amr,
            mfa_enrolment=mfa_enrolment,
            language=user.language,
        )
        if channel is not None:
            await self.accounts.record_sign_in(user, session, channel=channel, method=method)
        return raw_id, session

    def send_session_cookie(self, request: Request, raw_id: str, session: Session) -> None:
        """Give this browser the cookie of ``session`` (a sign-in or a new id): one that
        outlives the browser for a "remember me" session, else one that ends with it."""
        max_age = self.settings.remember_me_timeout if session.remember else None
        session_state(request.scope).begin(raw_id, session, max_age=max_age)

    @property
    def audit(self) -> AuditTrail:
        return self.services.audit

    @property
    def authenticator(self) -> Authenticator:
        return self.services.authenticator

    @property
    def accounts(self) -> Accounts:
        return self.services.accounts


BastionDep = Annotated[Bastion, Depends(get_bastion)]


def _prefixed(prefixes: tuple[str, ...]) -> Callable[[str], bool]:
    return lambda path: path.startswith(prefixes)


def _matched_by(routes: list[BaseRoute]) -> Callable[[Scope], bool]:
    """Whether one of ``routes`` answers this request (or would answer 405)."""

    def check(scope: Scope) -> bool:
        return any(route.matches(scope)[0] != Match.NONE for route in routes)

    return check


def _unhandled(app: FastAPI) -> Callable[[Scope], bool]:
    """Whether no route of ``app`` would run an endpoint for this request: the router will
    answer 404, or 405 for a method the route does not support (contract: never a 403)."""

    def check(scope: Scope) -> bool:
        return all(route.matches(scope)[0] != Match.FULL for route in app.router.routes)

    return check


def install(
    app: FastAPI,
    settings: Settings | None = None,
    *,
    templates_dir: str | Path | None = None,
    pages: bool = True,
    hooks: Hooks | None = None,
    csp_additions: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    engine: AsyncEngine | None = None,
) -> Bastion:
    """Add sessions, CSRF, security headers, error pages and Bastion's routes to ``app``.

    ``templates_dir`` is the application's template folder (its files replace Bastion's of
    the same name, see docs/templates.md); ``hooks`` its lifecycle hooks (docs/hooks.md).
    ``csp_additions`` adds sources to the Content-Security-Policy of the application's
    own paths under a prefix, ``{"/reports": {"img-src": ["https://charts.example"]}}``
    (checked here: see :class:`bastion.asgi.headers.CSPAdditions`); Bastion's own routes
    keep their policy whatever the prefix.

    ``engine`` is the application's own ``AsyncEngine`` on the database of
    ``BASTION_DATABASE_URL``, for one pool (Bastion never disposes it;
    docs/existing-app.md).

    Returns the :class:`Bastion` object (also at ``app.state.bastion``).
    """
    settings = settings or Settings()
    settings.check_startup()
    additions = CSPAdditions(csp_additions)
    # The routes themselves, not their ids: a route Bastion removes (FastAPI's /docs) could
    # leave its id to one it adds.
    routes_before = list(app.router.routes)
    bastion_routes: list[BaseRoute] = []  # filled once Bastion's routes are in
    bastion = Bastion(settings, templates_dir=templates_dir, hooks=hooks, engine=engine)
    app.state.bastion = bastion

    async def on_error(scope: Scope, status: int, message: str) -> ASGIApp:
        return bastion.errors.for_scope(scope, status, message)

    # Added innermost first: the last one added sees the request first.
    app.add_middleware(
        CSRFMiddleware,
        trusted_origins=settings.trusted_origins,
        on_error=on_error,
        exempt=lambda path: path in CSRF_EXEMPT,
        unhandled=_unhandled(app),
    )
    # Inside the session middleware: the signed-in user's own choice is in the session.
    app.add_middleware(LanguageMiddleware, default=settings.default_language)
    app.add_middleware(
        SessionMiddleware,
        manager=bastion.session_manager,
        signer=bastion.presession_signer,
        policy=bastion.cookies,
        on_error=on_error,
        skip=lambda path: path in PROBE_PATHS,
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_size,
        applies=_prefixed(AUTH_PREFIXES),
        on_error=on_error,
    )
    app.add_middleware(
        ProxyHeadersMiddleware, trusted=settings.trusted_proxies, header=settings.proxy_header
    )
    app.add_middleware(HeaderLimitMiddleware, max_bytes=MAX_HEADER_BYTES, on_error=on_error)
    app.add_middleware(
        SecurityHeadersMiddleware,
        hsts=settings.is_production,
        csp_additions=additions,
        keeps_own_csp=_matched_by(bastion_routes),
    )

    register_error_handlers(app, bastion.errors)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="bastion-static")

    from bastion.fastapi.api import router as api_router
    from bastion.fastapi.docs import install_docs
    from bastion.fastapi.health import router as health_router
    from bastion.fastapi.recovery import api_router as recovery_api_router
    from bastion.fastapi.wellknown import router as wellknown_router

    _add_routes(app, health_router, wellknown_router, api_router, recovery_api_router)
    install_docs(app, settings.site_name)
    if pages:
        from bastion.fastapi.account import router as account_router
        from bastion.fastapi.admin import router as admin_router
        from bastion.fastapi.federation import router as federation_router
        from bastion.fastapi.language import router as language_router
        from bastion.fastapi.mfa import router as mfa_router
        from bastion.fastapi.pages import router as pages_router
        from bastion.fastapi.passkeys import router as passkeys_router
        from bastion.fastapi.reauth import router as reauth_router
        from bastion.fastapi.recovery import router as recovery_router
        from bastion.fastapi.two_step import router as two_step_router

        pages_routes = [
            *pages_router.routes,
            *account_router.routes,
            *admin_router.routes,
            *recovery_router.routes,
            *mfa_router.routes,
            *two_step_router.routes,
            *reauth_router.routes,
            *passkeys_router.routes,
            *federation_router.routes,
            *language_router.routes,
        ]
        app.router.routes.append(RouteGroup([r for r in pages_routes if isinstance(r, APIRoute)]))
    bastion_routes.extend(r for r in app.router.routes if all(r is not b for b in routes_before))
    for route in bastion_routes:
        _rule_out_by_path(route)

    _wrap_lifespan(app, bastion)
    return bastion


def _add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Put the routers' routes in the app's own list, as ``include_router`` did before
    FastAPI 0.16x. Each included router is now matched by walking its tree on every request,
    which cost every route declared after Bastion's (the application's own) about 60 us
    of CPU, as much as the rest of a small request (the pages go further: see
    :mod:`bastion.fastapi.route_group`). Our routers carry no include-time
    options (their prefix, tags and responses are already in each route), so the routes
    and the OpenAPI document are the same either way."""
    for router in routers:
        app.router.routes.extend(router.routes)


class _FixedPathRoute(APIRoute):
    """An :class:`APIRoute` whose path has no parameters, so that a request for any other
    path is no match; said with one comparison before FastAPI's own matching (its effective
    route context, the path's regular expression: about 1.5 us for each route a request
    passes on its way to the application's routes, which come after Bastion's).

    Bastion's own routes get this class when :func:`install` adds them (they stay
    :class:`APIRoute` objects, so the OpenAPI document and everything else see them as
    before); they are never in an included router, the only case where FastAPI matches a
    route under another path than its own."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and get_route_path(scope) != self.path:
            return Match.NONE, {}
        return super().matches(scope)


def _rule_out_by_path(route: BaseRoute) -> None:
    # Exactly APIRoute (not an application's subclass of it with its own matching), and a
    # path whose regular expression matches that path alone.
    if type(route) is APIRoute and route.path_regex.pattern == f"^{re.escape(route.path)}$":
        route.__class__ = _FixedPathRoute


def _wrap_lifespan(app: FastAPI, bastion: Bastion) -> None:
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        await bastion.startup()
        try:
            async with inner(application) as state:
                yield state
        finally:
            await bastion.shutdown()

    app.router.lifespan_context = lifespan
