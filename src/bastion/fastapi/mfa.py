"""The signed-in user's second-factor pages: the security overview, the authenticator app
(TOTP) and recovery codes. Thin routes over :class:`bastion.mfa.service.SecondFactors`,
which records the audit events; wrong codes go through the account's back-off
(:meth:`bastion.auth.Authenticator.check_second_factor`).

Changing a factor is a sensitive action (``RecentPageUser``: a recent sign-in or
re-authentication). New recovery codes are shown once, in the answer to the POST that made
them, never again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from bastion.exceptions import AuthenticationFailed, RateLimited
from bastion.fastapi import two_step
from bastion.fastapi.dependencies import PageUser, Principal, RecentPageUser, client_ip
from bastion.fastapi.errors import throttled_message
from bastion.fastapi.install import Bastion, BastionDep
from bastion.fastapi.passkeys import passkeys_section
from bastion.i18n import LazyText, lazy
from bastion.mfa import methods
from bastion.mfa.policy import second_factor_required
from bastion.mfa.service import InvalidCode, TOTPAlreadyEnabled
from bastion.mfa.totp import TOTPEnrolment
from bastion.users.repository import UserRecord

router = APIRouter(include_in_schema=False)
CodeField = Annotated[str, Form(max_length=64)]

SECURITY_PAGE = "/account/security"
WRONG_CODE = lazy(
    "That code is not right. Check the time on your phone and enter the current code."
)
LAST_FACTOR = lazy(
    "Your account must keep a second factor: add a passkey before turning the authenticator "
    "app off."
)
NO_FACTOR = lazy("Set up an authenticator app or a passkey first.")
NOTICES = {
    "totp-disabled": lazy("The authenticator app is turned off for your account."),
    "totp-on": lazy("Your authenticator app is set up already."),
}


def _context(request: Request, user: Principal) -> dict[str, Any]:
    """What the audit trail records of this request."""
    return {
        "ip": client_ip(request),
        "user_agent": request.headers.get("user-agent"),
        "session_ref": user.session.ref,
    }


async def _security_page(
    request: Request,
    bastion: Bastion,
    user: Principal,
    *,
    error: str | LazyText | None = None,
    status_code: int = 200,
) -> Response:
    return bastion.templates.render(
        request,
        "account_security.html",
        {
            "summary": await bastion.services.mfa.summary(user.user_id),
            "notice": NOTICES.get(request.query_params.get("done", "")),
            "error": error,
            **await passkeys_section(request, bastion, user.user_id),
        },
        status_code=status_code,
    )


@router.get(SECURITY_PAGE)
async def security_page(request: Request, user: PageUser, bastion: BastionDep) -> Response:
    return await _security_page(request, bastion, user)


def _totp_page(
    request: Request,
    bastion: Bastion,
    enrolment: TOTPEnrolment | None,
    *,
    error: str | LazyText | None = None,
    error_fields: tuple[str, ...] = (),
    codes: list[str] | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return bastion.templates.render(
        request,
        "account_totp.html",
        {
            "enrolment": enrolment,
            # segno's SVG holds only paths: no text from the account or the settings.
            "qr_svg": Markup(enrolment.qr_svg) if enrolment else None,  # noqa: S704
            "error": error,
            "error_fields": error_fields,
            "codes": codes,
        },
        status_code=status_code,
        headers=headers,
    )


@router.get("/account/totp")
async def totp_form(request: Request, user: RecentPageUser, bastion: BastionDep) -> Response:
    mfa = bastion.services.mfa
    # A pending secret is shown again (a reload, a second tab): the app may hold it already.
    enrolment = await mfa.pending_totp(user.user_id, user.username)
    if enrolment is None:
        try:
            enrolment = await mfa.begin_totp(user.user_id, user.username)
        except TOTPAlreadyEnabled:
            return RedirectResponse(f"{SECURITY_PAGE}?done=totp-on", status_code=303)
    return _totp_page(request, bastion, enrolment)


@router.post("/account/totp")
async def totp_confirm(
    request: Request, user: RecentPageUser, bastion: BastionDep, code: CodeField = ""
) -> Response:
    mfa = bastion.services.mfa
    codes: list[str] = []

    async def confirm(account: UserRecord) -> bool:
        try:
            codes.extend(await mfa.confirm_totp(account.id, code, **_context(request, user)))
        except InvalidCode:
            return False
        return True

    async def again(
        message: str | LazyText,
        status_code: int,
        fields: tuple[str, ...] = (),
        headers: dict[str, str] | None = None,
    ) -> Response:
        # The same secret again, so the app the user just scanned it into stays right.
        enrolment = await mfa.pending_totp(user.user_id, user.username)
        if enrolment is None:
            return RedirectResponse("/account/totp", status_code=303)
        return _totp_page(
            request,
            bastion,
            enrolment,
            error=message,
            error_fields=fields,
            status_code=status_code,
            headers=headers,
        )

    try:
        await bastion.services.authenticator.check_second_factor(
            user.user_id,
            confirm,
            method="totp",
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            purpose="authenticator app setup",
        )
    except AuthenticationFailed:
        return await again(WRONG_CODE, 400, ("code",))
    except RateLimited as limited:
        return await again(
            throttled_message(limited.retry_after),
            429,
            headers={"Retry-After": str(limited.retry_after)},
        )
    # An enrolment session (BASTION_MFA) becomes a full one, under a new id: the page
    # rendered below takes its CSRF token from that session.
    await two_step.enrolled(request, bastion, (methods.OTP,))
    return _totp_page(request, bastion, None, codes=codes)


@router.post("/account/totp/disable")
async def totp_disable(request: Request, user: RecentPageUser, bastion: BastionDep) -> Response:
    mfa = bastion.services.mfa
    summary = await mfa.summary(user.user_id)
    required = second_factor_required(bastion.settings.mfa, user.roles)
    if required and summary.totp and summary.passkeys == 0:
        # BASTION_MFA asks this account for a second factor: not the last one.
        return await _security_page(request, bastion, user, error=LAST_FACTOR, status_code=400)
    await mfa.disable_totp(user.user_id, **_context(request, user))
    return RedirectResponse(f"{SECURITY_PAGE}?done=totp-disabled", status_code=303)


@router.post("/account/recovery-codes")
async def recovery_codes_new(
    request: Request, user: RecentPageUser, bastion: BastionDep
) -> Response:
    mfa = bastion.services.mfa
    if not (await mfa.summary(user.user_id)).has_any:
        # Recovery codes stand in for a second factor; without one they would be a
        # second password that never expires.
        return await _security_page(request, bastion, user, error=NO_FACTOR, status_code=400)
    codes = await mfa.regenerate_recovery_codes(user.user_id, **_context(request, user))
    return bastion.templates.render(request, "account_recovery_codes.html", {"codes": codes})
