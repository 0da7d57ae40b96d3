"""The re-authentication page ("sudo mode"): ``GET/POST /reauth``.

Sensitive actions (``require_recent_auth``) send a browser here once the session's last
sign-in is older than ``BASTION_REAUTH_WINDOW``. The user proves who they are again with
the password, or with a second factor of the account (an authenticator code, a recovery
code; a passkey through :mod:`bastion.fastapi.passkeys`). The checks are the
Authenticator's, so failures count against the account's back-off like failed sign-ins.
Success restarts the window (``SessionManager.reauthenticated``, which adds the methods to
the session's ``amr``), renews the session id (ASVS 5.0 7.2.4: a new session token on
re-authentication too) and goes back to ``next``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response

from bastion.asgi.sessions import session_state
from bastion.exceptions import AuthenticationFailed, RateLimited
from bastion.fastapi.dependencies import PageUser, Principal, client_ip, principal_from_session
from bastion.fastapi.errors import throttled_message
from bastion.fastapi.install import Bastion, BastionDep
from bastion.fastapi.two_step import AMR_OF, WRONG_CODE, WRONG_RECOVERY_CODE, factor_check
from bastion.i18n import LazyText, lazy
from bastion.mfa.methods import PASSWORD
from bastion.redirects import REAUTH_PATH, login_url, safe_next

router = APIRouter(include_in_schema=False)
FormText = Annotated[str, Form(max_length=4096)]
PURPOSE = "re-authentication"

# What the page says, in one place (translated when shown).
MESSAGES = {
    "empty": lazy("Enter your password, or a code of your second factor."),
    "wrong_password": lazy("The password is not correct."),
    "wrong_code": WRONG_CODE,
    "wrong_recovery_code": WRONG_RECOVERY_CODE,
}


@router.get(REAUTH_PATH)
async def reauth_form(request: Request, bastion: BastionDep, next: str = "") -> Response:
    principal = principal_from_session(session_state(request.scope).session)
    if principal is None:
        # Signing in is itself a fresh authentication: straight back to the action after it.
        return RedirectResponse(login_url(next), status_code=303)
    return await _page(request, bastion, principal, next)


@router.post(REAUTH_PATH)
async def reauth_submit(
    request: Request,
    user: PageUser,
    bastion: BastionDep,
    password: FormText = "",
    code: FormText = "",
    recovery_code: FormText = "",
    next: FormText = "",
) -> Response:
    """One proof per form: the password, else an authenticator code, else a recovery code.
    An empty form is no attempt (nothing is counted)."""
    ip, user_agent = client_ip(request), request.headers.get("user-agent")
    authenticator = bastion.authenticator
    factor = None if password else factor_check(bastion, request, code, recovery_code)
    try:
        if password:
            await authenticator.confirm_password(
                user.user_id, password, purpose=PURPOSE, ip=ip, user_agent=user_agent
            )
            methods: tuple[str, ...] = (PASSWORD,)
        elif factor is not None:
            method, check = factor
            await authenticator.check_second_factor(
                user.user_id, check, method=method, purpose=PURPOSE, ip=ip, user_agent=user_agent
            )
            methods = (AMR_OF[method],)
        else:
            return await _page(
                request, bastion, user, next, MESSAGES["empty"], fields=("password",)
            )
    except AuthenticationFailed:
        if password:
            key, field = "wrong_password", "password"
        elif factor is not None and factor[0] == "totp":
            key, field = "wrong_code", "code"
        else:
            key, field = "wrong_recovery_code", "recovery_code"
        return await _page(request, bastion, user, next, MESSAGES[key], fields=(field,))
    except RateLimited as limited:
        return await _page(
            request,
            bastion,
            user,
            next,
            throttled_message(limited.retry_after),
            status.HTTP_429_TOO_MANY_REQUESTS,
            {"Retry-After": str(limited.retry_after)},
        )
    return await reauthenticated(request, bastion, user, methods, next)


async def reauthenticated(
    request: Request, bastion: Bastion, user: Principal, methods: Sequence[str], next: str
) -> Response:
    """The user proved ``methods`` again: restart the window, renew the session id, record
    it and go back to ``next`` (also the passkey route's way to finish)."""
    sessions = bastion.services.sessions
    state = session_state(request.scope)
    refreshed = await sessions.reauthenticated(user.session, methods)
    rotated = await sessions.rotate(refreshed)
    if rotated is None:  # the session ended meanwhile (revoked elsewhere)
        state.end()
        return RedirectResponse(login_url(next), status_code=303)
    raw_id, session = rotated
    bastion.send_session_cookie(request, raw_id, session)
    await bastion.audit.record(
        "reauth.success",
        user_id=user.user_id,
        username=user.username,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        session_ref=session.ref,
        detail={"methods": list(methods)},
    )
    return RedirectResponse(safe_next(next), status_code=303)


async def _page(
    request: Request,
    bastion: Bastion,
    user: Principal,
    next: str,
    error: str | LazyText | None = None,
    status_code: int | None = None,
    headers: dict[str, str] | None = None,
    *,
    fields: Sequence[str] = (),
) -> Response:
    """The form, offering the user's second factors too; with ``error``, that message
    above it (400 unless ``status_code``) and ``fields`` marked invalid."""
    if status_code is None:
        status_code = status.HTTP_400_BAD_REQUEST if error else status.HTTP_200_OK
    factors = await bastion.services.mfa.summary(user.user_id)
    context = {
        "next": safe_next(next),
        "error": error,
        "error_fields": tuple(fields),
        "totp": factors.totp,
        "passkeys": factors.passkeys > 0,
        "recovery_codes": factors.recovery_codes_left > 0,
    }
    return bastion.templates.render(
        request, "reauth.html", context, status_code=status_code, headers=headers
    )
