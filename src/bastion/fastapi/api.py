"""The JSON API: OAuth 2.0 token endpoint (RFC 6749), revocation (RFC 7009), me, sessions."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from bastion.auth import SecondFactorRequired
from bastion.devices import describe
from bastion.exceptions import AuthenticationFailed, RateLimited, StoreUnavailable, TokenError
from bastion.fastapi.dependencies import CurrentUser, Principal, client_ip
from bastion.fastapi.install import Bastion, BastionDep
from bastion.fastapi.oauth_form import FormField, InvalidRequest, form_body, read_form
from bastion.fastapi.two_step import AMR_OF, SIGN_IN_METHOD, factor_check
from bastion.mfa import methods as amr_methods
from bastion.mfa.policy import second_factor_required
from bastion.recovery import EmailNotVerified
from bastion.refresh import RefreshTokenReused
from bastion.sessions import Session
from bastion.users.repository import UserRecord

log = logging.getLogger("bastion.security")


class ErrorDetail(BaseModel):
    """Bastion's JSON error body (middleware refusals, 401, 403, 404, 503)."""

    detail: str


class OAuthError(BaseModel):
    """An RFC 6749 section 5.2 error body."""

    error: str
    error_description: str


class MFARequired(BaseModel):
    """The password grant's answer for a user with a second factor: no tokens yet, but an
    ``mfa_token`` (single use, 5 minutes) for the ``urn:bastion:grant-type:mfa`` grant."""

    error: str
    error_description: str
    mfa_token: str


class TokenResponse(BaseModel):
    """An RFC 6749 section 5.1 token response."""

    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


# What any /api route may answer besides its own results, so the OpenAPI document tells
# the truth (the schemathesis run in tests/fuzz checks every answer against it).
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "Malformed request (cookie, Content-Length)"},
    413: {"model": ErrorDetail, "description": "Request body too large"},
    503: {
        "model": ErrorDetail,
        "description": "A store is unavailable",
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
    },
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorDetail,
        "description": "Missing, invalid or expired credentials",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
}
FORM_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": OAuthError | ErrorDetail,
        "description": "RFC 6749 section 5.2 error, invalid_request for any problem with the "
        "form; ErrorDetail only for a malformed cookie or Content-Length, refused before",
    },
}
MFA_GRANT = "urn:bastion:grant-type:mfa"
TOKEN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": MFARequired | OAuthError | ErrorDetail,
        "description": "RFC 6749 section 5.2 error. `mfa_required` (with an `mfa_token`): the "
        "password was right and the user has a second factor; send it with "
        f"`grant_type={MFA_GRANT}`, `mfa_token` and `otp` (a code from the authenticator "
        "app) or `recovery_code`. `mfa_enrolment_required`: the account must set up a "
        "second factor (BASTION_MFA) on the web first. invalid_request for any problem "
        "with the form; ErrorDetail only for a malformed cookie or Content-Length",
    },
}
router = APIRouter(prefix="/api", tags=["api"], responses=COMMON_RESPONSES)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_FIELD = 4096


def oauth_error(
    error: str, description: str, status_code: int = 400, **headers: str
) -> JSONResponse:
    """An RFC 6749 section 5.2 error body."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status_code,
        headers={**NO_STORE, **headers},
    )


def token_response(access: str, expires_in: int, refresh: str) -> JSONResponse:
    return JSONResponse(
        {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": expires_in,
            "refresh_token": refresh,
        },
        headers=NO_STORE,
    )


TOKEN_FORM = (
    FormField("grant_type", 64, required=True),
    FormField("username", MAX_FIELD),
    FormField("password", MAX_FIELD),
    FormField("refresh_token", MAX_FIELD),
    FormField("scope", MAX_FIELD),
    # The urn:bastion:grant-type:mfa grant: the password grant's mfa_token and one factor.
    FormField("mfa_token", MAX_FIELD),
    FormField("otp", 64),
    FormField("recovery_code", 64),
)
REVOKE_FORM = (FormField("token", MAX_FIELD, required=True), FormField("token_type_hint", 64))


@router.post(
    "/token",
    summary="OAuth 2.0 token endpoint (password, refresh_token and second-factor grants)",
    openapi_extra={"requestBody": form_body(TOKEN_FORM)},
    responses={
        200: {"model": TokenResponse, "description": "New tokens"},
        **TOKEN_ERRORS,
        429: {
            "model": OAuthError,
            "description": "Throttled",
            "headers": {"Retry-After": {"schema": {"type": "string"}}},
        },
    },
)
async def token(request: Request, bastion: BastionDep) -> JSONResponse:
    """Swagger UI's "Authorize" posts ``grant_type=password`` here.

    Grants: ``password`` (``username``, ``password``), ``refresh_token``
    (``refresh_token``), and ``urn:bastion:grant-type:mfa`` (``mfa_token`` and ``otp`` or
    ``recovery_code``), which completes a password grant answered ``mfa_required``: a
    user with a second factor gets tokens only after proving it. A wrong code answers
    ``invalid_grant`` and leaves the ``mfa_token`` usable (for 5 minutes from the password
    and at most 5 wrong codes); wrong codes count against the account's back-off like
    wrong passwords (429 while throttled)."""
    try:
        form = await read_form(request, TOKEN_FORM)
    except InvalidRequest as invalid:
        return oauth_error("invalid_request", str(invalid))
    grant_type = form["grant_type"]
    if grant_type == "password":
        if "username" not in form or "password" not in form:
            return oauth_error("invalid_request", "username and password are required")
        return await _password_grant(request, bastion, form["username"], form["password"])
    if grant_type == "refresh_token":
        if "refresh_token" not in form:
            return oauth_error("invalid_request", "refresh_token is required")
        return await _refresh_grant(request, bastion, form["refresh_token"])
    if grant_type == MFA_GRANT:
        if "mfa_token" not in form or ("otp" in form) == ("recovery_code" in form):
            return oauth_error(
                "invalid_request", "mfa_token and one of otp or recovery_code are required"
            )
        return await _mfa_grant(request, bastion, form)
    # The grants a client starts with; the mfa grant follows an mfa_required answer, which names it.
    return oauth_error("unsupported_grant_type", "use password or refresh_token")


def link_base(bastion: Bastion, request: Request) -> str | None:
    """The absolute base of links in mails: ``BASTION_PUBLIC_URL``; in development, when it
    is empty, this request's own origin. None in production without it (a request's Host
    header must never choose where a reset link points)."""
    public = bastion.settings.public_url
    if public:
        return public.rstrip("/")
    if bastion.settings.is_production:
        return None
    return str(request.base_url).rstrip("/")


async def _password_grant(
    request: Request, bastion: Bastion, username: str, password: str
) -> JSONResponse:
    ip = client_ip(request)
    user_agent = request.headers.get("user-agent")
    try:
        user = await bastion.authenticator.authenticate(
            username, password, ip=ip, user_agent=user_agent, channel="api"
        )
    except AuthenticationFailed:
        return oauth_error("invalid_grant", "invalid user name or password")
    except RateLimited as limited:
        return _throttled(limited)
    except SecondFactorRequired as due:
        return await _second_factor_due(request, bastion, due.user)
    if second_factor_required(bastion.settings.mfa, user.roles):
        return oauth_error(
            "mfa_enrolment_required",
            "this account must set up a second factor: sign in on the web to add one",
        )
    return await _issue_tokens(request, bastion, user)


def _throttled(limited: RateLimited) -> JSONResponse:
    return oauth_error(
        "invalid_grant",
        "too many attempts; retry later",
        status.HTTP_429_TOO_MANY_REQUESTS,
        **{"Retry-After": str(limited.retry_after)},
    )


def _unverified(request: Request, bastion: Bastion, user: UserRecord) -> JSONResponse:
    # Only a correct password gets here. A new link goes out (within the account's limit
    # of verification mails), as the sign-in page offers one.
    bastion.services.recovery.send_verification_later(user, base_url=link_base(bastion, request))
    return oauth_error(
        "email_not_verified",
        "the account's e-mail address is not verified: follow the link mailed to it",
    )


async def _second_factor_due(request: Request, bastion: Bastion, user: UserRecord) -> JSONResponse:
    """The password was right and the user has a second factor: an ``mfa_token`` (no
    tokens, no session yet). An unverified address is said first, as without a factor."""
    try:
        await bastion.services.recovery.require_verified(
            user,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            channel="api",
        )
    except EmailNotVerified:
        return _unverified(request, bastion, user)
    mfa_token = await bastion.services.pending_sign_ins.start(
        user.id, channel="api", methods=(amr_methods.PASSWORD,)
    )
    return JSONResponse(
        {
            "error": "mfa_required",
            "error_description": "a second factor is required: send it with "
            f"grant_type={MFA_GRANT}, the mfa_token and otp or recovery_code",
            "mfa_token": mfa_token,
        },
        status_code=400,
        headers=NO_STORE,
    )


async def _mfa_grant(request: Request, bastion: Bastion, form: dict[str, str]) -> JSONResponse:
    pending_sign_ins = bastion.services.pending_sign_ins
    token = form["mfa_token"]
    pending = await pending_sign_ins.claim(token, channel="api")
    if pending is None:
        return oauth_error("invalid_grant", "the mfa_token is invalid, used or expired")
    # This request holds the pending state: it completes it or puts it back.
    offered = factor_check(bastion, request, form.get("otp", ""), form.get("recovery_code", ""))
    if offered is None:
        await pending_sign_ins.release(token, pending, wrong_code=False)
        return oauth_error("invalid_request", "otp or recovery_code is required")
    method, check = offered
    try:
        user = await bastion.authenticator.check_second_factor(
            pending.user_id,
            check,
            method=method,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            channel="api",
        )
    except AuthenticationFailed:
        await pending_sign_ins.release(token, pending, wrong_code=True)
        return oauth_error("invalid_grant", "the code is not valid")
    except RateLimited as limited:
        await pending_sign_ins.release(token, pending, wrong_code=False)
        return _throttled(limited)
    except StoreUnavailable:
        with contextlib.suppress(StoreUnavailable):
            await pending_sign_ins.release(token, pending, wrong_code=False)
        raise
    amr = amr_methods.with_mfa((*pending.methods, AMR_OF[method]))
    return await _issue_tokens(request, bastion, user, method=SIGN_IN_METHOD[method], amr=amr)


async def _issue_tokens(
    request: Request,
    bastion: Bastion,
    user: UserRecord,
    *,
    method: str = "password",
    amr: tuple[str, ...] = (amr_methods.PASSWORD,),
) -> JSONResponse:
    services = bastion.services
    try:
        _, session = await bastion.start_session(
            request, user, kind="api", channel="api", method=method, amr=amr
        )
    except EmailNotVerified:
        return _unverified(request, bastion, user)
    access, claims = services.access_tokens.encode(
        str(user.id), session.key, session.token_claims()
    )
    refresh, _ = await services.refresh_tokens.issue(session)
    return token_response(access, claims.exp - claims.iat, refresh)


async def _refresh_grant(request: Request, bastion: Bastion, token: str) -> JSONResponse:
    services = bastion.services
    try:
        rotation = await services.refresh_tokens.rotate(token)
    except RefreshTokenReused as reused:
        await bastion.audit.record(
            "refresh.reuse_detected",
            ip=client_ip(request),
            session_ref=reused.session_key[:12],
            detail={"action": "session ended"},
        )
        return oauth_error("invalid_grant", "refresh token is invalid")
    except TokenError:
        return oauth_error("invalid_grant", "refresh token is invalid")
    session = rotation.session
    access, claims = services.access_tokens.encode(
        str(session.user_id), session.key, session.token_claims()
    )
    return token_response(access, claims.exp - claims.iat, rotation.token)


@router.post(
    "/token/revoke",
    summary="RFC 7009 token revocation",
    response_class=Response,
    openapi_extra={"requestBody": form_body(REVOKE_FORM)},
    responses={200: {"description": "Revoked, or unknown"}, **FORM_ERRORS},
)
async def revoke(request: Request, bastion: BastionDep) -> Response:
    """Ends the session of a refresh token. Answers 200 for unknown tokens too."""
    try:
        token = (await read_form(request, REVOKE_FORM))["token"]
    except InvalidRequest as invalid:
        return oauth_error("invalid_request", str(invalid))
    session = await bastion.services.refresh_tokens.revoke(token)
    if session is not None:
        await bastion.accounts.revoke_session(
            session,
            by="token",
            actor_id=None,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    return Response(status_code=200, headers=NO_STORE)


@router.get("/me", summary="Who am I", responses=AUTH_RESPONSES)
async def me(user: CurrentUser) -> dict[str, Any]:
    return {
        "username": user.username,
        "email": user.session.email,
        "email_verified": user.session.email_verified,
        "amr": list(user.session.amr),
        # When the user last proved who they are (sign-in or /reauth), epoch seconds as in
        # access tokens: sensitive actions need it within BASTION_REAUTH_WINDOW.
        "auth_time": int(user.session.auth_time),
        "roles": sorted(user.roles),
        "session_id": user.session_id,
    }


def session_view(session: Session, current: Session) -> dict[str, Any]:
    from bastion.clock import to_datetime

    return {
        "id": session.key,
        "current": session.key == current.key,
        "created_at": to_datetime(session.created_at).isoformat(),
        "last_seen_at": to_datetime(session.last_seen_at).isoformat(),
        "expires_at": to_datetime(session.expires_at).isoformat(),
        "ip": session.ip,
        "user_agent": session.user_agent,
        "device": describe(session.user_agent),
        "kind": session.kind,
        "amr": list(session.amr),
    }


@router.get("/sessions", summary="My active sessions", responses=AUTH_RESPONSES)
async def my_sessions(user: CurrentUser, bastion: BastionDep) -> list[dict[str, Any]]:
    sessions = await bastion.services.sessions.list_for_user(user.user_id)
    return [session_view(s, user.session) for s in sessions]


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    summary="End one of my sessions",
    responses={
        **AUTH_RESPONSES,
        403: {"model": ErrorDetail, "description": "CSRF check failed (cookie authentication)"},
        404: {"model": ErrorDetail, "description": "No such session"},
    },
)
async def end_my_session(
    session_id: str, request: Request, user: CurrentUser, bastion: BastionDep
) -> Response:
    await end_own_session(bastion, user, session_id, request)
    return Response(status_code=204)


async def end_own_session(
    bastion: Bastion, user: Principal, session_id: str, request: Request
) -> Session:
    """End a session of ``user``; another user's (or an unknown) id is a 404."""
    target = await bastion.services.sessions.get(session_id)
    if target is None or target.user_id != user.user_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such session")
    await bastion.accounts.revoke_session(
        target,
        by="owner",
        actor_id=user.user_id,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    return target
