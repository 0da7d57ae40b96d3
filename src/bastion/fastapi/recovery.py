"""Pages and API routes of account recovery: forgotten passwords, address verification
and address change (the rules live in :mod:`bastion.recovery`).

A followed reset link never shows its token on a page: ``GET /password/reset/<token>``
checks it, keeps it server-side for this browser (bound to the browser's CSRF secret, a
value only that browser holds) and redirects to ``/password/reset``, as Django's
``set-password`` step does; pages reached by a token answer with ``Referrer-Policy:
no-referrer``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from bastion.asgi.sessions import session_state
from bastion.exceptions import AuthenticationFailed, RateLimited, UserError
from bastion.fastapi.api import COMMON_RESPONSES, NO_STORE, ErrorDetail, OAuthError, link_base
from bastion.fastapi.dependencies import PageUser, RecentPageUser, client_ip
from bastion.fastapi.errors import throttled_message
from bastion.fastapi.install import Bastion, BastionDep
from bastion.i18n import LazyText, lazy
from bastion.recovery import InvalidLink, Recovery
from bastion.signing import BadSignature, TimestampSigner
from bastion.users.repository import UserRecord

log = logging.getLogger("bastion.security")
router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["api"], responses=COMMON_RESPONSES)
FormText = Annotated[str, Form(max_length=4096)]
NO_REFERRER = {"Referrer-Policy": "no-referrer"}
# A resend ticket (given after a correct password for an unverified account) lasts this long.
TICKET_SECONDS = 900

# What the pages say, in one place (translated when shown).
MESSAGES = {
    "email_required": lazy("Enter the e-mail address of your account."),
    "wrong_password": lazy("The current password is not correct."),
    "address_taken": lazy(
        "This address belongs to another account by now, so it cannot become yours. "
        "Your address has not changed."
    ),
    "change_sent": lazy(
        "We sent a confirmation link to %(address)s. Your address changes when you follow "
        "it; until then you keep the one you have."
    ),
}
# The reset form's fields, by the names the password policy gives them.
RESET_FIELDS = {"password": "new_password", "password_confirm": "new_password_confirm"}


# ---- helpers ---------------------------------------------------------------------------


def recovery_of(bastion: Bastion) -> Recovery:
    return bastion.services.recovery


def _who(request: Request) -> dict[str, Any]:
    return {"ip": client_ip(request), "user_agent": request.headers.get("user-agent")}


def _ticket_signer(bastion: Bastion) -> TimestampSigner:
    settings = bastion.settings
    return TimestampSigner(
        settings.secret_bytes(),
        settings.fallback_secret_bytes(),
        purpose="bastion.recovery.resend-verification",
    )


def resend_ticket(bastion: Bastion, user: UserRecord) -> str:
    """A short-lived signed ticket that lets this browser ask for a new verification link
    for ``user``: given only after the account's correct password was typed."""
    return _ticket_signer(bastion).sign(str(user.id).encode("ascii"))


def _invalid_link(
    request: Request, bastion: Bastion, kind: str, message: LazyText | None = None
) -> Response:
    return bastion.templates.render(
        request,
        "link_invalid.html",
        {"kind": kind, "message": message},
        status_code=status.HTTP_400_BAD_REQUEST,
        headers=NO_REFERRER,
    )


# ---- forgotten password ------------------------------------------------------------------


@router.get("/password/forgot")
async def forgot_form(request: Request, bastion: BastionDep) -> Response:
    return bastion.templates.render(request, "password_forgot.html", {"error": None, "sent": False})


@router.post("/password/forgot")
async def forgot_submit(request: Request, bastion: BastionDep, email: FormText = "") -> Response:
    if not email.strip():
        return bastion.templates.render(
            request,
            "password_forgot.html",
            {"error": MESSAGES["email_required"], "error_fields": ("email",), "sent": False},
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    recovery = recovery_of(bastion)
    try:
        await recovery.check_request(client_ip(request))
    except RateLimited as limited:
        return bastion.templates.render(
            request,
            "password_forgot.html",
            {"error": throttled_message(limited.retry_after), "error_fields": (), "sent": False},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(limited.retry_after)},
        )
    # The same page for every address, before anything looks for an account.
    recovery.request_reset(email, base_url=link_base(bastion, request), **_who(request))
    return bastion.templates.render(request, "password_forgot.html", {"error": None, "sent": True})


@router.get("/password/reset/{token}")
async def reset_link(token: str, request: Request, bastion: BastionDep) -> Response:
    recovery = recovery_of(bastion)
    try:
        await recovery.check_reset(token)
    except InvalidLink as invalid:
        log.info("password reset link refused: %s", invalid.reason)
        return _invalid_link(request, bastion, "reset")
    binding = session_state(request.scope).ensure_csrf_secret()
    await recovery.hold(binding, token)
    return RedirectResponse("/password/reset", status_code=303, headers=NO_REFERRER)


async def _held_token(request: Request, bastion: Bastion) -> str | None:
    binding = session_state(request.scope).csrf_secret
    return await recovery_of(bastion).held(binding) if binding else None


def _reset_form(
    request: Request,
    bastion: Bastion,
    user: UserRecord,
    action: str,
    error: UserError | None = None,
) -> Response:
    """The new-password form; with ``error`` (the policy's), its message above the form
    and the fields it is about marked invalid."""
    fields = sorted(RESET_FIELDS[f] for f in error.fields if f in RESET_FIELDS) if error else []
    return bastion.templates.render(
        request,
        "password_reset.html",
        {
            "username": user.username,
            "action": action,
            "error": str(error) if error else None,
            "error_fields": fields or (["new_password"] if error else []),
        },
        status_code=status.HTTP_400_BAD_REQUEST if error else status.HTTP_200_OK,
        headers=NO_REFERRER,
    )


@router.get("/password/reset")
async def reset_form(request: Request, bastion: BastionDep) -> Response:
    token = await _held_token(request, bastion)
    if token is None:
        return _invalid_link(request, bastion, "reset")
    try:
        user = await recovery_of(bastion).check_reset(token)
    except InvalidLink:
        return _invalid_link(request, bastion, "reset")
    return _reset_form(request, bastion, user, "/password/reset")


@router.post("/password/reset")
async def reset_submit_held(
    request: Request,
    bastion: BastionDep,
    new_password: FormText = "",
    new_password_confirm: FormText = "",
) -> Response:
    token = await _held_token(request, bastion)
    if token is None:
        return _invalid_link(request, bastion, "reset")
    return await _reset(request, bastion, token, new_password, new_password_confirm, held=True)


@router.post("/password/reset/{token}")
async def reset_submit(
    token: str,
    request: Request,
    bastion: BastionDep,
    new_password: FormText = "",
    new_password_confirm: FormText = "",
) -> Response:
    return await _reset(request, bastion, token, new_password, new_password_confirm, held=False)


async def _reset(
    request: Request,
    bastion: Bastion,
    token: str,
    new_password: str,
    confirm: str,
    *,
    held: bool,
) -> Response:
    recovery = recovery_of(bastion)
    action = "/password/reset" if held else request.url.path
    try:
        user = await recovery.check_reset(token)
    except InvalidLink:
        return _invalid_link(request, bastion, "reset")
    try:
        await recovery.reset_password(token, new_password, confirm, **_who(request))
    except InvalidLink:
        return _invalid_link(request, bastion, "reset")
    except UserError as error:
        return _reset_form(request, bastion, user, action, error)
    state = session_state(request.scope)
    if held and state.csrf_secret:
        await recovery.release(state.csrf_secret)
    if state.session is not None and state.session.user_id == user.id:
        state.end()  # that session ended with all the others
    return RedirectResponse("/login?done=password-reset", status_code=303)


# ---- address verification and change ------------------------------------------------------


@router.get("/email/verify/{token}")
async def follow_email_link(token: str, request: Request, bastion: BastionDep) -> Response:
    try:
        kind, _ = await recovery_of(bastion).confirm_address(token, **_who(request))
    except InvalidLink as invalid:
        log.info("e-mail link refused: %s", invalid.reason)
        return _invalid_link(request, bastion, "email")
    except UserError:
        return _invalid_link(request, bastion, "email", MESSAGES["address_taken"])
    return bastion.templates.render(
        request,
        "email_confirmed.html",
        {"kind": kind, "signed_in": session_state(request.scope).session is not None},
        headers=NO_REFERRER,
    )


@router.post("/email/verify/resend")
async def resend_after_sign_in(
    request: Request, bastion: BastionDep, ticket: Annotated[str, Form(max_length=512)] = ""
) -> Response:
    """A new verification link for the account whose correct password this browser typed
    a moment ago (its ticket says which)."""
    try:
        user_id = int(_ticket_signer(bastion).unsign(ticket, max_age=TICKET_SECONDS))
    except (BadSignature, ValueError):
        return _invalid_link(request, bastion, "ticket")
    user = await bastion.services.users.get_by_id(user_id)
    if user is not None and user.is_active:
        await recovery_of(bastion).send_verification(user, base_url=link_base(bastion, request))
    return bastion.templates.render(request, "verify_sent.html", {})


@router.post("/account/email/verify")
async def resend_signed_in(request: Request, user: PageUser, bastion: BastionDep) -> Response:
    record = await bastion.accounts.require(user.user_id)
    sent = await recovery_of(bastion).send_verification(
        record, base_url=link_base(bastion, request)
    )
    return RedirectResponse("/dashboard?done=verify-sent" if sent else "/dashboard", 303)


def _email_form(
    request: Request,
    bastion: Bastion,
    *,
    error: str | LazyText | None = None,
    error_fields: tuple[str, ...] = (),
    notice: str | LazyText | None = None,
    email: str = "",
    status_code: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    code = status_code or (status.HTTP_400_BAD_REQUEST if error else status.HTTP_200_OK)
    return bastion.templates.render(
        request,
        "account_email.html",
        {"error": error, "error_fields": error_fields, "notice": notice, "email": email},
        status_code=code,
        headers=headers,
    )


@router.get("/account/email")
async def email_form(request: Request, user: RecentPageUser, bastion: BastionDep) -> Response:
    return _email_form(request, bastion)


@router.post("/account/email")
async def email_change(
    request: Request,
    user: RecentPageUser,
    bastion: BastionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    current_password: FormText = "",
) -> Response:
    recovery = recovery_of(bastion)
    typed = email[:254]
    record = await bastion.accounts.require(user.user_id)
    # The address is judged first: that answer depends on no secret, so a refusal never
    # tells whether the current password was right.
    try:
        recovery.check_new_address(record, email)
    except UserError as error:
        return _email_form(
            request, bastion, error=str(error), error_fields=tuple(error.fields), email=typed
        )
    try:
        await bastion.authenticator.confirm_password(
            user.user_id, current_password, purpose="e-mail change", **_who(request)
        )
        address = await recovery.request_email_change(
            record, email, base_url=link_base(bastion, request), **_who(request)
        )
    except AuthenticationFailed:
        return _email_form(
            request,
            bastion,
            error=MESSAGES["wrong_password"],
            error_fields=("current_password",),
            email=typed,
        )
    except RateLimited as limited:
        return _email_form(
            request,
            bastion,
            error=throttled_message(limited.retry_after),
            email=typed,
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(limited.retry_after)},
        )
    except UserError as error:
        return _email_form(
            request, bastion, error=str(error), error_fields=tuple(error.fields), email=typed
        )
    return _email_form(request, bastion, notice=MESSAGES["change_sent"].format(address=address))


# ---- the JSON API ------------------------------------------------------------------------


class ForgotRequest(BaseModel):
    email: str = Field(max_length=320, description="The address of the account.")


class ResetRequest(BaseModel):
    token: str = Field(max_length=1024, description="The token of the mailed reset link.")
    new_password: str = Field(max_length=4096)


THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorDetail,
        "description": "Too many requests from this client address",
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
    },
}


@api_router.post(
    "/password/forgot",
    status_code=202,
    response_class=Response,
    summary="Ask for a password-reset link",
    responses={
        202: {"description": "Accepted, whether or not an account has the address"},
        **THROTTLED,
    },
)
async def api_forgot(body: ForgotRequest, request: Request, bastion: BastionDep) -> Response:
    """Mails a reset link when an account has this address. The answer is 202 for every
    address; past the per-client limit it is 429."""
    recovery = recovery_of(bastion)
    await recovery.check_request(client_ip(request))
    recovery.request_reset(body.email, base_url=link_base(bastion, request), **_who(request))
    return Response(status_code=202, headers=NO_STORE)


@api_router.post(
    "/password/reset",
    status_code=204,
    response_class=Response,
    summary="Set a new password with a reset link's token",
    responses={
        204: {"description": "Password set; every session and refresh token of the user ended"},
        400: {
            "model": OAuthError | ErrorDetail,
            "description": "invalid_token (unknown, used, expired or stale) or invalid_password "
            "(the password policy); ErrorDetail only for a malformed cookie or Content-Length",
        },
    },
)
async def api_reset(body: ResetRequest, request: Request, bastion: BastionDep) -> Response:
    try:
        await recovery_of(bastion).reset_password(body.token, body.new_password, **_who(request))
    except InvalidLink:
        return JSONResponse(
            {"error": "invalid_token", "error_description": "the link is invalid, expired or used"},
            status_code=400,
            headers=NO_STORE,
        )
    except UserError as error:
        return JSONResponse(
            {"error": "invalid_password", "error_description": str(error)},
            status_code=400,
            headers=NO_STORE,
        )
    return Response(status_code=204, headers=NO_STORE)
