"""Two-step sign-in (``/login/verify``) and enrolment at sign-in (``BASTION_MFA``).

After a right password for a user with a second factor, ``POST /login`` starts a pending
sign-in (:mod:`bastion.mfa.pending`) and sends the browser here; no session exists until a
second factor is proved.

The browser holds the pending state's signed id in a cookie of its own (``bastion_mfa``,
``__Host-bastion_mfa`` in production; HttpOnly, SameSite=Lax, 5 minutes) rather than in a
hidden form field: ``/login/verify`` is reached by a redirect, and a field would have to
travel in that redirect's URL, where it lands in history, logs and Referer headers. The
cookie alone is worth nothing: the state is bound to the CSRF secret of the browser that
typed the password (its pre-session), so another browser holding the cookie, or a replay
after the sign-in completed (the state is consumed), gets "sign in again".

A wrong code keeps the state (the user types the code again, not the password) until it
expires, until :data:`bastion.mfa.pending.MAX_WRONG_CODES` wrong codes, or until the
account's back-off refuses attempts (every wrong code feeds it, through
:meth:`bastion.auth.Authenticator.check_second_factor`).

A user whom ``BASTION_MFA`` requires to have a second factor, and who has none, gets a
session flagged ``mfa_enrolment`` that can only reach the pages that add one (see
:mod:`bastion.fastapi.dependencies`); :func:`enrolled`, called by those pages once a factor
is added, turns it into a full session under a new id.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from bastion.asgi.sessions import parse_cookie_header, session_state
from bastion.auth import FactorMethod
from bastion.exceptions import AuthenticationFailed, RateLimited, StoreUnavailable
from bastion.fastapi.dependencies import ENROLMENT_PAGE, client_ip
from bastion.fastapi.errors import throttled_message
from bastion.fastapi.install import Bastion, BastionDep
from bastion.i18n import LazyText, lazy
from bastion.mfa import methods as amr_methods
from bastion.mfa.pending import PENDING_TTL, PendingSignIn
from bastion.recovery import EmailNotVerified
from bastion.users.repository import UserRecord

log = logging.getLogger("bastion.security")
router = APIRouter(include_in_schema=False)
VERIFY_PATH = "/login/verify"
PENDING_COOKIE = "bastion_mfa"
# Sent back to sign in, with this fixed notice key (bastion.fastapi.pages.LOGIN_NOTICES).
EXPIRED = "/login?done=verify-expired"
WRONG_CODE = lazy("That code is not valid. Check the time on your device and try again.")
WRONG_RECOVERY_CODE = lazy("That recovery code is not valid, or it was used already.")
NO_CODE = lazy("Enter the code from your authenticator app, or one of your recovery codes.")
MAX_CODE = 64
# How a session started by the second step names its sign-in to the hooks and the audit.
SIGN_IN_METHOD: dict[FactorMethod, str] = {
    "totp": "password+totp",
    "recovery_code": "password+recovery_code",
    "passkey": "password+passkey",
}
AMR_OF: dict[FactorMethod, str] = {
    "totp": amr_methods.OTP,
    "recovery_code": amr_methods.RECOVERY_CODE,
    "passkey": amr_methods.PASSKEY,
}


def pending_cookie_name(bastion: Bastion) -> str:
    return f"__Host-{PENDING_COOKIE}" if bastion.cookies.secure else PENDING_COOKIE


def pending_token(request: Request, bastion: Bastion) -> str | None:
    """The browser's pending sign-in token; None unless exactly one cookie carries it."""
    values = parse_cookie_header(request.scope).get(pending_cookie_name(bastion), [])
    return values[0] if len(values) == 1 else None


def clear_pending_cookie(request: Request, bastion: Bastion) -> None:
    state = session_state(request.scope)
    state.set_cookies.append(bastion.cookies.clear(pending_cookie_name(bastion)))


async def start_two_step(
    request: Request,
    bastion: Bastion,
    user: UserRecord,
    *,
    remember: bool,
    next: str,
    methods: Sequence[str] = (amr_methods.PASSWORD,),
) -> RedirectResponse:
    """The first step of ``user`` (``methods``: the password, or ``("fed",)`` for an
    external provider) was right and a second factor is due: a pending sign-in bound to
    this browser, and the redirect to ``/login/verify``."""
    state = session_state(request.scope)
    token = await bastion.services.pending_sign_ins.start(
        user.id,
        channel="web",
        methods=methods,
        csrf_secret=state.ensure_csrf_secret(),
        remember=remember,
        next=next,
    )
    state.set_cookies.append(
        bastion.cookies.header(pending_cookie_name(bastion), token, max_age=PENDING_TTL)
    )
    return RedirectResponse(VERIFY_PATH, status_code=303)


async def _verify_page(
    request: Request,
    bastion: Bastion,
    pending: PendingSignIn,
    *,
    error: str | LazyText | None = None,
    error_fields: Sequence[str] = (),
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The second step's page; with ``error``, that message above the forms and
    ``error_fields`` (``code``, ``recovery_code``) marked invalid."""
    summary = await bastion.services.mfa.summary(pending.user_id)
    context = {
        "error": error,
        "error_fields": tuple(error_fields),
        "totp": summary.totp,
        "recovery_codes": summary.recovery_codes_left > 0,
        "passkeys": summary.passkeys > 0,
    }
    return bastion.templates.render(
        request, "login_verify.html", context, status_code=status_code, headers=headers
    )


def _expired(request: Request, bastion: Bastion) -> RedirectResponse:
    clear_pending_cookie(request, bastion)
    return RedirectResponse(EXPIRED, status_code=303)


@router.get(VERIFY_PATH)
async def verify_form(request: Request, bastion: BastionDep) -> Response:
    pending = await bastion.services.pending_sign_ins.peek(
        pending_token(request, bastion),
        channel="web",
        csrf_secret=session_state(request.scope).csrf_secret,
    )
    if pending is None:
        return _expired(request, bastion)
    return await _verify_page(request, bastion, pending)


def factor_check(
    bastion: Bastion,
    request: Request,
    code: str,
    recovery_code: str,
) -> tuple[FactorMethod, Callable[[UserRecord], Awaitable[bool]]] | None:
    """Which factor a form (or the token endpoint) offers and how to check it; None for
    none. A recovery code, once right, is spent (and audited by the factor service)."""
    mfa = bastion.services.mfa
    code = "".join(code.split())[:MAX_CODE]
    recovery_code = recovery_code.strip()[:MAX_CODE]
    if code:
        return "totp", lambda user: mfa.verify_totp(user.id, code)
    if recovery_code:
        ip = client_ip(request)
        user_agent = request.headers.get("user-agent")
        return "recovery_code", lambda user: mfa.use_recovery_code(
            user.id, recovery_code, ip=ip, user_agent=user_agent
        )
    return None


@router.post(VERIFY_PATH)
async def verify_submit(
    request: Request,
    bastion: BastionDep,
    code: Annotated[str, Form()] = "",
    recovery_code: Annotated[str, Form()] = "",
) -> Response:
    state = session_state(request.scope)
    pending_sign_ins = bastion.services.pending_sign_ins
    token = pending_token(request, bastion)
    pending = await pending_sign_ins.claim(token, channel="web", csrf_secret=state.csrf_secret)
    if pending is None or token is None:
        return _expired(request, bastion)
    # From here this request holds the state: every way out completes it or puts it back.
    offered = factor_check(bastion, request, code, recovery_code)
    if offered is None:
        await pending_sign_ins.release(token, pending, wrong_code=False)
        return await _verify_page(
            request, bastion, pending, error=NO_CODE, error_fields=("code",), status_code=400
        )
    method, check = offered
    try:
        user = await bastion.authenticator.check_second_factor(
            pending.user_id,
            check,
            method=method,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            channel="web",
        )
    except AuthenticationFailed:
        if not await pending_sign_ins.release(token, pending, wrong_code=True):
            return _expired(request, bastion)
        if method == "totp":
            return await _verify_page(
                request, bastion, pending, error=WRONG_CODE, error_fields=("code",), status_code=400
            )
        return await _verify_page(
            request,
            bastion,
            pending,
            error=WRONG_RECOVERY_CODE,
            error_fields=("recovery_code",),
            status_code=400,
        )
    except RateLimited as limited:
        await pending_sign_ins.release(token, pending, wrong_code=False)
        return await _verify_page(
            request,
            bastion,
            pending,
            error=throttled_message(limited.retry_after),
            status_code=429,
            headers={"Retry-After": str(limited.retry_after)},
        )
    except StoreUnavailable:
        with contextlib.suppress(StoreUnavailable):
            await pending_sign_ins.release(token, pending, wrong_code=False)
        raise
    return await finish_two_step(request, bastion, user, pending, method)


async def finish_two_step(
    request: Request,
    bastion: Bastion,
    user: UserRecord,
    pending: PendingSignIn,
    method: FactorMethod,
    extra_amr: Sequence[str] = (),
) -> Response:
    """The second factor (``method``) of a claimed pending sign-in was proved: the new
    session, and the redirect to where the user was going. ``extra_amr``: further method
    names the factor proved (a passkey's ``"user"``)."""
    state = session_state(request.scope)
    amr = amr_methods.with_mfa((*pending.methods, AMR_OF[method], *extra_amr))
    try:
        raw_id, session = await bastion.start_session(
            request,
            user,
            remember=pending.remember,
            replaces=state.session.key if state.session else None,
            channel="web",
            method=_sign_in_method(pending, method),
            amr=amr,
        )
    except EmailNotVerified:
        # Checked before the pending state began; only a change meanwhile gets here.
        return _expired(request, bastion)
    bastion.send_session_cookie(request, raw_id, session)
    clear_pending_cookie(request, bastion)
    return RedirectResponse(pending.next, status_code=303)


def _sign_in_method(pending: PendingSignIn, method: FactorMethod) -> str:
    """How the hooks and the audit name a sign-in completed by ``method``: after a password
    ``password+totp``, after an external provider ``external+totp``."""
    if amr_methods.PASSWORD in pending.methods:
        return SIGN_IN_METHOD[method]
    return f"external+{method}"


async def start_enrolment_session(
    request: Request, bastion: Bastion, user: UserRecord, *, remember: bool
) -> RedirectResponse:
    """``BASTION_MFA`` requires a second factor of ``user``, who has none: a session that
    can only set one up, and the way to the page that does."""
    state = session_state(request.scope)
    raw_id, session = await bastion.start_session(
        request,
        user,
        remember=remember,
        replaces=state.session.key if state.session else None,
        channel="web",
        mfa_enrolment=True,
    )
    bastion.send_session_cookie(request, raw_id, session)
    log.info("session ref %s may only enrol a second factor", session.ref)
    return RedirectResponse(ENROLMENT_PAGE, status_code=303)


async def enrolled(request: Request, bastion: Bastion, methods: Sequence[str]) -> None:
    """The signed-in user of ``request`` has just added a second factor, proving ``methods``
    (``("otp",)`` for a confirmed TOTP code, ``("hwk", "user")`` for a passkey). An
    enrolment session (``BASTION_MFA``) becomes a full one: under a new id and CSRF secret,
    the flag cleared, its ``amr`` holding the new methods. Any other session is left as it
    is. Call it from the route that added the factor, before rendering its answer."""
    state = session_state(request.scope)
    session = state.session
    if session is None or not session.mfa_enrolment:
        return
    rotated = await bastion.services.sessions.rotate(
        session,
        mfa_enrolment=False,
        amr=amr_methods.with_mfa((*session.amr, *methods)),
    )
    if rotated is None:
        return  # ended meanwhile: the browser signs in again
    raw_id, renewed = rotated
    bastion.send_session_cookie(request, raw_id, renewed)
    await bastion.audit.record(
        "mfa.enrolment.completed",
        user_id=renewed.user_id,
        username=renewed.username,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        session_ref=renewed.ref,
        detail={"methods": list(methods)},
    )
