"""The signed-in user's own pages: devices (sessions), password change, registration."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from bastion.asgi.sessions import session_state
from bastion.devices import describe
from bastion.exceptions import AuthenticationFailed, RateLimited, UserError
from bastion.fastapi.api import end_own_session, link_base
from bastion.fastapi.dependencies import PageUser, RecentPageUser, client_ip
from bastion.fastapi.errors import throttled_message
from bastion.fastapi.install import Bastion, BastionDep
from bastion.i18n import gettext, lazy
from bastion.i18n.formatting import format_when
from bastion.mfa.methods import describe_methods
from bastion.ratelimit import describe_wait

router = APIRouter(include_in_schema=False)
FormText = Annotated[str, Form(max_length=4096)]

SESSION_NOTICES = {
    "revoked": lazy("The session was signed out."),
    "others": lazy("Signed out everywhere else."),
}


def mark_lookalikes(rows: list[dict[str, Any]]) -> None:
    """Set each row's ``lookalike``: another row has the same user, device and sign-in time
    as shown, so its buttons also name the session's reference (unique button names)."""
    seen = Counter(_looks(row) for row in rows)
    for row in rows:
        row["lookalike"] = seen[_looks(row)] > 1


def _looks(row: dict[str, Any]) -> tuple[str, str, str]:
    session = row["session"]
    return (str(session.username), row["device"], format_when(session.created_at))


@router.get("/account/sessions")
async def sessions_page(request: Request, user: PageUser, bastion: BastionDep) -> Response:
    sessions = await bastion.services.sessions.list_for_user(user.user_id)
    rows = [
        {
            "session": s,
            "device": describe(s.user_agent),
            "current": s.key == user.session_id,
            "methods": describe_methods(s.amr),
        }
        for s in sessions
    ]
    mark_lookalikes(rows)
    return bastion.templates.render(
        request,
        "account_sessions.html",
        {"rows": rows, "notice": SESSION_NOTICES.get(request.query_params.get("done", ""))},
    )


@router.post("/account/sessions/revoke-others")
async def revoke_others(request: Request, user: RecentPageUser, bastion: BastionDep) -> Response:
    await bastion.accounts.revoke_other_sessions(
        user.session, ip=client_ip(request), user_agent=request.headers.get("user-agent")
    )
    return RedirectResponse("/account/sessions?done=others", status_code=303)


@router.post("/account/sessions/{session_id}/revoke")
async def revoke_one(
    session_id: str, request: Request, user: PageUser, bastion: BastionDep
) -> Response:
    ended = await end_own_session(bastion, user, session_id, request)
    if ended.key == user.session_id:
        session_state(request.scope).end()
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse("/account/sessions?done=revoked", status_code=303)


@router.get("/account/password")
async def password_form(request: Request, user: RecentPageUser, bastion: BastionDep) -> Response:
    return bastion.templates.render(
        request, "account_password.html", {"error": None, "notice": None}
    )


@router.post("/account/password")
async def password_change(
    request: Request,
    user: RecentPageUser,
    bastion: BastionDep,
    current_password: FormText = "",
    new_password: FormText = "",
    new_password_confirm: FormText = "",
) -> Response:
    services = bastion.services

    def failed(
        message: str,
        fields: tuple[str, ...] = (),
        status_code: int = 400,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return bastion.templates.render(
            request,
            "account_password.html",
            {"error": message, "error_fields": fields, "notice": None},
            status_code=status_code,
            headers=headers,
        )

    # The new password is judged first: that answer depends on no secret, so a refusal
    # never tells whether the current password was right.
    try:
        services.accounts.check_new_password(new_password, new_password_confirm, user.username)
    except UserError as error:
        renamed = {"password": "new_password", "password_confirm": "new_password_confirm"}
        return failed(str(error), tuple(sorted(renamed.get(f, f) for f in error.fields)))
    try:
        await services.authenticator.confirm_password(
            user.user_id,
            current_password,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            purpose="password change",
        )
    except AuthenticationFailed:
        return failed(gettext("The current password is not correct."), ("current_password",))
    except RateLimited as limited:
        return failed(
            throttled_message(limited.retry_after),
            status_code=429,
            headers={"Retry-After": str(limited.retry_after)},
        )
    await services.accounts.change_password(
        user.user_id,
        new_password,
        keep_session=user.session_id,
        actor_id=user.user_id,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    # This browser goes on, under a new session id (a privilege change rotates the id).
    rotated = await services.sessions.rotate(user.session)
    state = session_state(request.scope)
    if rotated is None:
        state.end()
        return RedirectResponse("/login", status_code=303)
    raw_id, session = rotated
    bastion.send_session_cookie(request, raw_id, session)
    return bastion.templates.render(
        request,
        "account_password.html",
        {
            "error": None,
            "notice": gettext("Password changed. Your other sessions were signed out."),
        },
    )


def _registration_open(bastion: Bastion) -> None:
    if bastion.settings.registration != "open":
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=gettext("Registration is closed."))


@router.get("/register")
async def register_form(request: Request, bastion: BastionDep) -> Response:
    _registration_open(bastion)
    return bastion.templates.render(request, "register.html", {"error": None, "values": {}})


@router.post("/register")
async def register(
    request: Request,
    bastion: BastionDep,
    username: FormText = "",
    email: FormText = "",
    password: FormText = "",
    password_confirm: FormText = "",
) -> Response:
    _registration_open(bastion)
    services = bastion.services
    values = {"username": username[:150], "email": email[:254]}
    verification = bastion.settings.email_verification
    try:
        if not username or not password:
            missing = [n for n, v in (("username", username), ("password", password)) if not v]
            raise UserError(gettext("A user name and a password are required."), fields=missing)
        if verification == "required" and not email.strip():
            raise UserError(
                gettext("An e-mail address is required: you will get a link to verify it."),
                fields=("email",),
            )
        user = await services.accounts.register(
            username,
            email.strip() or None,
            password,
            password_confirm,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except UserError as error:
        return bastion.templates.render(
            request,
            "register.html",
            {"error": str(error), "error_fields": tuple(sorted(error.fields)), "values": values},
            status_code=400,
        )
    except RateLimited as limited:
        return bastion.templates.render(
            request,
            "register.html",
            {
                "error": gettext(
                    "Too many sign-up attempts from your network. Please wait %(wait)s and "
                    "try again.",
                    wait=describe_wait(limited.retry_after),
                ),
                "values": values,
            },
            status_code=429,
            headers={"Retry-After": str(limited.retry_after)},
        )
    if verification != "off":
        services.recovery.send_verification_later(user, base_url=link_base(bastion, request))
    if services.recovery.holds_back(user):
        # No session until the address is verified.
        return bastion.templates.render(request, "verify_sent.html", {})
    state = session_state(request.scope)
    previous = state.session.key if state.session else None
    raw_id, session = await bastion.start_session(request, user, replaces=previous)
    bastion.send_session_cookie(request, raw_id, session)
    return RedirectResponse("/dashboard", status_code=303)
