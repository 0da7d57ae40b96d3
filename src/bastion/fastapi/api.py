"""The JSON API: OAuth 2.0 token endpoint (RFC 6749), revocation (RFC 7009), me, sessions."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from bastion.devices import describe
from bastion.exceptions import AuthenticationFailed, RateLimited, TokenError
from bastion.fastapi.dependencies import CurrentUser, Principal, client_ip
from bastion.fastapi.install import Bastion, BastionDep
from bastion.fastapi.oauth_form import FormField, InvalidRequest, form_body, read_form
from bastion.recovery import EmailNotVerified
from bastion.refresh import RefreshTokenReused
from bastion.sessions import Session

log = logging.getLogger("bastion.security")


class ErrorDetail(BaseModel):
    """Bastion's JSON error body (middleware refusals, 401, 403, 404, 503)."""

    detail: str


class OAuthError(BaseModel):
    """An RFC 6749 section 5.2 error body."""

    error: str
    error_description: str


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
)
REVOKE_FORM = (FormField("token", MAX_FIELD, required=True), FormField("token_type_hint", 64))


@router.post(
    "/token",
    summary="OAuth 2.0 token endpoint (password and refresh_token grants)",
    openapi_extra={"requestBody": form_body(TOKEN_FORM)},
    responses={
        200: {"model": TokenResponse, "description": "New tokens"},
        **FORM_ERRORS,
        429: {
            "model": OAuthError,
            "description": "Throttled",
            "headers": {"Retry-After": {"schema": {"type": "string"}}},
        },
    },
)
async def token(request: Request, bastion: BastionDep) -> JSONResponse:
    """Swagger UI's "Authorize" posts ``grant_type=password`` here."""
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
    services = bastion.services
    ip = client_ip(request)
    user_agent = request.headers.get("user-agent")
    try:
        user = await bastion.authenticator.authenticate(
            username, password, ip=ip, user_agent=user_agent, channel="api"
        )
    except AuthenticationFailed:
        return oauth_error("invalid_grant", "invalid user name or password")
    except RateLimited as limited:
        return oauth_error(
            "invalid_grant",
            "too many attempts; retry later",
            status.HTTP_429_TOO_MANY_REQUESTS,
            **{"Retry-After": str(limited.retry_after)},
        )
    try:
        _, session = await bastion.start_session(request, user, kind="api", channel="api")
    except EmailNotVerified:
        # Only a correct password gets here. A new link goes out (within the account's
        # limit of verification mails), as the sign-in page offers one.
        services.recovery.send_verification_later(user, base_url=link_base(bastion, request))
        return oauth_error(
            "email_not_verified",
            "the account's e-mail address is not verified: follow the link mailed to it",
        )
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
