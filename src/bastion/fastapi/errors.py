"""Error responses: an HTML page or JSON, never a traceback, SQL, path or key."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import Scope

from bastion.asgi.headers import CSP_NONCE_KEY, CSP_SOURCES_KEY, security_headers
from bastion.asgi.language import choose_for_scope, request_language
from bastion.asgi.sessions import session_state
from bastion.csrf import mask_token
from bastion.exceptions import RateLimited, StoreUnavailable
from bastion.fastapi.dependencies import (
    ANSWER_KEY,
    ENROLMENT_PAGE,
    EnrolmentRequired,
    LoginRequired,
    ReauthRequired,
    principal_from_session,
)
from bastion.i18n import DEFAULT_LANGUAGE, LazyText, gettext, lazy, use_language
from bastion.ratelimit import describe_wait
from bastion.recovery import redact_token_paths
from bastion.redirects import login_url, reauth_url
from bastion.sessions import Session

log = logging.getLogger("bastion")
RETRY_AFTER_UNAVAILABLE = "5"
TITLES: dict[int, LazyText] = {
    400: lazy("Bad request"),
    401: lazy("Sign-in required"),
    403: lazy("Forbidden"),
    404: lazy("Not found"),
    405: lazy("Method not allowed"),
    413: lazy("Request too large"),
    422: lazy("Invalid request"),
    429: lazy("Too many attempts"),
    431: lazy("Request headers too large"),
    500: lazy("Something went wrong"),
    503: lazy("Temporarily unavailable"),
}
ERROR_TITLE = lazy("Error")
# What a page says below its title when the error carries no message of its own (its
# detail is the bare status phrase, which would only repeat the title).
EXPLANATIONS: dict[int, LazyText] = {
    404: lazy("There is no page at this address. Check the link you followed."),
    405: lazy("This address does not accept that kind of request."),
}
INVALID_FORM = lazy("The form was incomplete or invalid.")
# The 503 page names what is down in a sentence of its own (the JSON answer keeps
# StoreUnavailable's "<component> unavailable").
UNAVAILABLE: dict[str, LazyText] = {
    "database": lazy("The database is unavailable right now. Please try again in a moment."),
    "session store": lazy(
        "The session store is unavailable right now. Please try again in a moment."
    ),
    "rate-limit store": lazy(
        "The rate-limit store is unavailable right now. Please try again in a moment."
    ),
    "cache": lazy("The cache is unavailable right now. Please try again in a moment."),
    "passkeys": lazy("Passkeys are unavailable right now. Please try again in a moment."),
    "application": lazy("The site is still starting. Please try again in a moment."),
}
SOMETHING_UNAVAILABLE = lazy(
    "A service this site needs is unavailable right now. Please try again in a moment."
)
JSON_PREFIXES = ("/api/", "/.well-known/", "/healthz", "/readyz", "/openapi.json")


def throttled_message(retry_after: int) -> str:
    """The page's answer to a throttled attempt, saying how long to wait."""
    return gettext(
        "Too many attempts. Please wait %(wait)s and try again.", wait=describe_wait(retry_after)
    )


def unavailable_message(component: str) -> LazyText:
    """What a 503 page says about ``component`` (:attr:`StoreUnavailable.component`)."""
    return UNAVAILABLE.get(component, SOMETHING_UNAVAILABLE)


def wants_json(scope: Scope) -> bool:
    # A browser-facing dependency (SignedInUser, require_role(..., browser=True)) has
    # already chosen the form of this route's answers.
    if (answer := scope.get(ANSWER_KEY)) is not None:
        return bool(answer == "json")
    if scope.get("path", "").startswith(JSON_PREFIXES):
        return True
    accept = Headers(scope=scope).get("accept", "")
    return "application/json" in accept and "text/html" not in accept


class ErrorRenderer:
    def __init__(self, templates: Any, *, default_language: str = DEFAULT_LANGUAGE) -> None:
        self.templates = templates
        self.default_language = default_language

    def for_scope(
        self,
        scope: Scope,
        status: int,
        message: str | LazyText,
        headers: Mapping[str, str] | None = None,
        *,
        page_message: str | LazyText | None = None,
    ) -> Response:
        """The error answer: JSON with ``message`` as its detail, or the error page saying
        ``page_message`` (default: ``message``). A lazy message is translated into the
        request's language."""
        extra = dict(headers or {})
        if status == 503:
            extra.setdefault("Retry-After", RETRY_AFTER_UNAVAILABLE)
            # A middleware's outage answer carries StoreUnavailable's "<component>
            # unavailable": its page says the component's sentence too.
            if page_message is None and isinstance(message, str):
                component = message.removesuffix(" unavailable")
                if component != message:
                    page_message = unavailable_message(component)
        if request_language(scope) is not None:
            return self._answer(scope, status, message, page_message, extra)
        # An error before the language middleware ran (a store outage while reading the
        # session, an oversized request): chosen from the request alone.
        with use_language(choose_for_scope(scope, default=self.default_language)):
            return self._answer(scope, status, message, page_message, extra)

    def _answer(
        self,
        scope: Scope,
        status: int,
        message: str | LazyText,
        page_message: str | LazyText | None,
        extra: dict[str, str],
    ) -> Response:
        if wants_json(scope):
            return JSONResponse({"detail": str(message)}, status_code=status, headers=extra)
        return self._page(scope, status, str(page_message or message), extra)

    def _page(self, scope: Scope, status: int, message: str, extra: dict[str, str]) -> Response:
        title = str(TITLES.get(status, ERROR_TITLE))
        english = TITLES[status].message if status in TITLES else ""
        if message.casefold() in (
            title.casefold(),
            english.casefold(),
            _phrase(status).casefold(),
        ):
            message = str(EXPLANATIONS.get(status, ""))
        session = _signed_in_session(scope)
        html = self.templates.env.get_template("error.html").render(
            status=status,
            title=title,
            message=message,
            request=Request(scope),
            # A signed-in user keeps the navigation (and its sign-out form); an anonymous
            # visitor's error page mints no pre-session: it has no form.
            user=principal_from_session(session),
            csrf_token=mask_token(session.csrf_secret) if session is not None else "",
            csp_nonce=scope.get(CSP_NONCE_KEY, ""),
            static=lambda path: f"/_bastion/static/{path}",
        )
        return HTMLResponse(html, status_code=status, headers=extra)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _signed_in_session(scope: Scope) -> Session | None:
    try:
        return session_state(scope).session
    except RuntimeError:  # the error came before the session middleware read the cookie
        return None


def register_error_handlers(app: FastAPI, renderer: ErrorRenderer) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail
        if not isinstance(detail, str | LazyText):
            detail = TITLES.get(exc.status_code, "")
        return renderer.for_scope(request.scope, exc.status_code, detail, exc.headers)

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        # Name the fields, never echo their values back: they may be passwords.
        problems = [
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in exc.errors()
        ]
        if wants_json(request.scope):
            return JSONResponse({"detail": problems}, status_code=422)
        return renderer.for_scope(request.scope, 400, INVALID_FORM)

    async def unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StoreUnavailable)
        log.warning("%s unavailable: %s", exc.component, exc.detail)
        return renderer.for_scope(
            request.scope,
            503,
            f"{exc.component} unavailable",
            page_message=unavailable_message(exc.component),
        )

    async def limited(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RateLimited)
        return renderer.for_scope(
            request.scope,
            429,
            lazy(
                "Too many attempts. Please wait %(wait)s and try again.",
                wait=describe_wait(exc.retry_after),
            ),
            {"Retry-After": str(exc.retry_after)},
        )

    async def crashed(request: Request, exc: Exception) -> Response:
        error_id = secrets.token_hex(6)
        log.error(
            "unhandled error %s on %s",
            error_id,
            redact_token_paths(request.url.path),
            exc_info=exc,
        )
        response = renderer.for_scope(
            request.scope,
            500,
            lazy("An unexpected error occurred (error id %(id)s).", id=error_id),
        )
        # This answer comes from Starlette's outermost middleware, past Bastion's own: it
        # adds the security headers itself.
        bastion = getattr(request.app.state, "bastion", None)
        hsts = bool(bastion is not None and bastion.settings.is_production)
        nonce = request.scope.get(CSP_NONCE_KEY) or secrets.token_urlsafe(16)
        sources = request.scope.get(CSP_SOURCES_KEY)
        for name, value in security_headers(nonce, hsts=hsts, csp_sources=sources).items():
            response.headers.setdefault(name, value)
        return response

    async def login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        return RedirectResponse(login_url(exc.next_path), status_code=303)

    async def reauth_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ReauthRequired)
        return RedirectResponse(reauth_url(exc.next_path), status_code=303)

    async def enrolment_required(request: Request, exc: Exception) -> Response:
        return RedirectResponse(ENROLMENT_PAGE, status_code=303)

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(EnrolmentRequired, enrolment_required)
    app.add_exception_handler(ReauthRequired, reauth_required)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StoreUnavailable, unavailable)
    app.add_exception_handler(RateLimited, limited)
    app.add_exception_handler(Exception, crashed)
