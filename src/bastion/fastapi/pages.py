"""The sign-in pages: login, logout and the dashboard."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from bastion.asgi.sessions import session_state
from bastion.auth import SecondFactorRequired
from bastion.devices import describe
from bastion.exceptions import AuthenticationFailed, RateLimited
from bastion.fastapi.dependencies import PageUser, client_ip
from bastion.fastapi.errors import throttled_message
from bastion.fastapi.install import STATIC_DIR, BastionDep
from bastion.fastapi.recovery import resend_ticket
from bastion.fastapi.two_step import start_enrolment_session, start_two_step
from bastion.i18n import lazy
from bastion.i18n.formatting import format_duration
from bastion.mfa.pending import PENDING_TTL
from bastion.mfa.policy import second_factor_required
from bastion.recovery import EmailNotVerified
from bastion.redirects import safe_next
from bastion.users.repository import UserRecord

log = logging.getLogger("bastion.security")
router = APIRouter(include_in_schema=False)
GENERIC_FAILURE = lazy("Invalid user name or password.")
MAX_USERNAME = 150


class _Duration:
    """``seconds`` in words, in the language of the page that shows it."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __str__(self) -> str:
        return format_duration(self.seconds)


# The login page's notices, chosen by a fixed key in the query: never text from the URL.
LOGIN_NOTICES = {
    "signed-out": lazy("You have been signed out."),
    "password-reset": lazy(
        "Your password was changed and every session of your account ended. "
        "Sign in with the new password."
    ),
    "verify-expired": lazy(
        "That sign-in is no longer valid: it lasts %(duration)s, ends after a few wrong "
        "codes, and works once. Sign in again.",
        duration=_Duration(PENDING_TTL),
    ),
}
UNVERIFIED = lazy(
    "Your password is right, but the e-mail address of your account is not verified yet. "
    "Follow the link we sent to it, or ask for a new one."
)
DASHBOARD_NOTICES = {"verify-sent": lazy("We sent a new verification link to your address.")}
# Browsers and tools ask for /favicon.ico whatever a page links; it is favicon.svg as an icon.
FAVICON = STATIC_DIR / "favicon.ico"


@router.get("/")
async def home(request: Request) -> RedirectResponse:
    signed_in = session_state(request.scope).session is not None
    return RedirectResponse("/dashboard" if signed_in else "/login", status_code=303)


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    return FileResponse(FAVICON)


@router.get("/login")
async def login_form(
    request: Request, bastion: BastionDep, next: str = "", done: str = ""
) -> Response:
    context = {
        "next": safe_next(next) if next else "",
        "error": None,
        "notice": LOGIN_NOTICES.get(done),
        "resend_ticket": None,
    }
    return bastion.templates.render(request, "login.html", context)


@router.post("/login")
async def login_submit(
    request: Request,
    bastion: BastionDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    remember: Annotated[str | None, Form()] = None,
    next: Annotated[str, Form()] = "",
) -> Response:
    state = session_state(request.scope)
    authenticator = bastion.authenticator
    ip = client_ip(request)
    user_agent = request.headers.get("user-agent")
    context: dict[str, Any] = {
        "next": safe_next(next) if next else "",
        "username": username[:MAX_USERNAME],
        "resend_ticket": None,
    }
    try:
        user = await authenticator.authenticate(
            username[: MAX_USERNAME + 1],
            password,
            ip=ip,
            user_agent=user_agent,
            channel="web",
        )
    except AuthenticationFailed:
        return bastion.templates.render(
            request, "login.html", {**context, "error": GENERIC_FAILURE}, status_code=400
        )
    except RateLimited as limited:
        return bastion.templates.render(
            request,
            "login.html",
            {**context, "error": throttled_message(limited.retry_after), "error_fields": ()},
            status_code=429,
            headers={"Retry-After": str(limited.retry_after)},
        )
    except SecondFactorRequired as due:
        user = due.user
        second_factor_due = True
    else:
        second_factor_due = False
    remembered = remember is not None and remember.lower() in ("on", "1", "true", "yes")
    previous = state.session.key if state.session else None
    must_enrol = not second_factor_due and second_factor_required(bastion.settings.mfa, user.roles)
    try:
        if second_factor_due:
            # No session before the second factor; an unverified address is said now, as
            # it would be to a user without one.
            await bastion.services.recovery.require_verified(
                user, ip=ip, user_agent=user_agent, channel="web"
            )
            return await start_two_step(
                request, bastion, user, remember=remembered, next=safe_next(next)
            )
        if must_enrol:
            return await start_enrolment_session(request, bastion, user, remember=remembered)
        raw_id, session = await bastion.start_session(
            request, user, remember=remembered, replaces=previous, channel="web"
        )
    except EmailNotVerified:
        return _unverified(request, bastion, context, user)
    bastion.send_session_cookie(request, raw_id, session)
    return RedirectResponse(safe_next(next), status_code=303)


def _unverified(
    request: Request, bastion: BastionDep, context: dict[str, Any], user: UserRecord
) -> Response:
    # Said only now that the password proved right: it tells nobody else anything.
    ticket = resend_ticket(bastion, user)
    return bastion.templates.render(
        request,
        "login.html",
        {**context, "error": UNVERIFIED, "error_fields": (), "resend_ticket": ticket},
        status_code=403,
    )


@router.post("/logout")
async def logout(request: Request, bastion: BastionDep) -> RedirectResponse:
    state = session_state(request.scope)
    session = state.session
    if session is not None:
        await bastion.accounts.sign_out(
            session, ip=client_ip(request), user_agent=request.headers.get("user-agent")
        )
    state.end()
    return RedirectResponse("/login?done=signed-out", status_code=303)


@router.get("/dashboard")
async def dashboard(request: Request, user: PageUser, bastion: BastionDep) -> Response:
    session = user.session
    return bastion.templates.render(
        request,
        "dashboard.html",
        {
            "session": session,
            "device": describe(session.user_agent),
            "notice": DASHBOARD_NOTICES.get(request.query_params.get("done", "")),
            "verification": bastion.settings.email_verification,
        },
    )
