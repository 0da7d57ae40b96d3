"""Passkey routes: registration on the account, sign-in without a password, and a passkey as
the second step of a sign-in (``/login/verify``) or to re-authenticate (``/reauth``).

The ceremonies are JSON calls made by ``static/passkeys.js``: options first, then the
browser's answer (``PublicKeyCredential.toJSON()``). Each is CSRF-protected like any other
unsafe request (the script sends ``X-CSRF-Token``), and its challenge is bound to the
browser's CSRF secret (the session's, or an anonymous visitor's pre-session), so an answer
is only accepted from the browser that asked. The work is in :mod:`bastion.mfa.passkeys`.

Renaming and removing are plain forms on ``/account/security`` (the partial template
``account_passkeys.html``, filled by :func:`passkeys_section`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated, Any, TypedDict

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from bastion.asgi.sessions import session_state
from bastion.exceptions import AuthenticationFailed, RateLimited, StoreUnavailable, UserError
from bastion.fastapi.dependencies import (
    Principal,
    RecentPageUser,
    client_ip,
    principal_from_session,
    require_recent_auth,
)
from bastion.fastapi.install import Bastion, BastionDep
from bastion.fastapi.pages import UNVERIFIED
from bastion.fastapi.reauth import PURPOSE as REAUTH_PURPOSE
from bastion.fastapi.reauth import reauthenticated
from bastion.fastapi.two_step import (
    EXPIRED,
    clear_pending_cookie,
    enrolled,
    finish_two_step,
    pending_token,
)
from bastion.i18n import LazyText, gettext, lazy
from bastion.mfa import methods as amr
from bastion.mfa.models import PASSKEY_NAME_MAX_LENGTH
from bastion.mfa.passkeys import (
    PasskeyRefused,
    PasskeyUse,
    Purpose,
    RelyingParty,
    TooManyPasskeys,
    relying_party,
)
from bastion.recovery import EmailNotVerified
from bastion.redirects import safe_next
from bastion.text import clean_text
from bastion.users.repository import UserRecord

log = logging.getLogger("bastion.security")
router = APIRouter(include_in_schema=False)
SECURITY_PAGE = "/account/security"
# One sentence for every refusal: the reason goes to the log, never to the page.
# (JSON "detail" texts, shown by passkeys.js; the "error" codes stay as they are.)
REFUSED = lazy("That passkey could not be used. Try again, or use another way to sign in.")
NOT_REGISTERED = lazy("The passkey could not be added. Try again.")
# What the security page says after a form of this module (a fixed key in the query).
NOTICES = {
    "passkey-added": lazy("Passkey added."),
    "passkey-renamed": lazy("Passkey renamed."),
    "passkey-removed": lazy("Passkey removed. It can no longer sign in to this account."),
}
MAX_NEXT = 2048


class RegistrationAnswer(BaseModel):
    credential: dict[str, Any]
    name: str = Field("", max_length=4 * PASSKEY_NAME_MAX_LENGTH)


class SignInAnswer(BaseModel):
    credential: dict[str, Any]
    next: str = Field("", max_length=MAX_NEXT)


async def _session_user(
    user: Annotated[Principal, Depends(require_recent_auth())],
) -> Principal:
    """A signed-in browser (its session cookie, not a bearer token: the ceremony's
    challenge is bound to the session) that signed in or re-authenticated recently."""
    if user.via != "session":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=gettext("Sign in with your browser to manage passkeys."),
        )
    return user


async def _browser_user(request: Request) -> Principal:
    """A signed-in browser, by its session cookie; 401 (JSON) for anyone else."""
    user = principal_from_session(session_state(request.scope).session)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="authentication required")
    return user


RecentBrowserUser = Annotated[Principal, Depends(_session_user)]
BrowserUser = Annotated[Principal, Depends(_browser_user)]


def _relying_party(request: Request, bastion: Bastion) -> RelyingParty:
    # The origin alone: an application mounted under a path still has its host's origin.
    return relying_party(bastion.settings, f"{request.url.scheme}://{request.url.netloc}")


def _binding(request: Request) -> str:
    """The secret this browser's ceremonies are bound to (its CSRF check passed with it)."""
    return session_state(request.scope).ensure_csrf_secret()


class _Who(TypedDict):
    ip: str | None
    user_agent: str | None


def _who(request: Request) -> _Who:
    return {"ip": client_ip(request), "user_agent": request.headers.get("user-agent")}


def _log_refusal(error: PasskeyRefused) -> None:
    # The reason may quote what the client sent (its origin): one clean, bounded line.
    log.info("passkey refused: %s", clean_text(error.reason)[:200])


def _refused(error: PasskeyRefused, message: LazyText = REFUSED) -> JSONResponse:
    _log_refusal(error)
    return JSONResponse({"error": "passkey_refused", "detail": str(message)}, status_code=400)


async def _account(bastion: Bastion, user: Principal) -> UserRecord:
    record = await bastion.services.users.get_by_id(user.user_id)
    if record is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="authentication required")
    return record


# -- the account's passkeys --------------------------------------------------------------


@router.post("/account/passkeys/options")
async def registration_options(
    request: Request, user: RecentBrowserUser, bastion: BastionDep
) -> Response:
    account = await _account(bastion, user)
    try:
        options = await bastion.services.passkeys.registration_options(
            account, _relying_party(request, bastion), _binding(request)
        )
    except TooManyPasskeys as error:
        return JSONResponse(
            {"error": "too_many_passkeys", "detail": str(error)},
            status_code=400,
        )
    return JSONResponse(options)


@router.post("/account/passkeys", status_code=status.HTTP_201_CREATED)
async def register(
    request: Request, answer: RegistrationAnswer, user: RecentBrowserUser, bastion: BastionDep
) -> Response:
    account = await _account(bastion, user)
    try:
        passkey = await bastion.services.passkeys.register(
            account,
            answer.credential,
            answer.name,
            _relying_party(request, bastion),
            _binding(request),
            **_who(request),
        )
    except PasskeyRefused as error:
        return _refused(error, NOT_REGISTERED)
    except TooManyPasskeys as error:
        return JSONResponse(
            {"error": "too_many_passkeys", "detail": str(error)},
            status_code=400,
        )
    # A session that could only set up a second factor (BASTION_MFA) becomes a full one.
    await enrolled(request, bastion, (amr.PASSKEY, amr.USER_PRESENCE_VERIFIED))
    return JSONResponse(
        {"id": passkey.id, "name": passkey.name, "redirect": f"{SECURITY_PAGE}?done=passkey-added"},
        status_code=status.HTTP_201_CREATED,
    )


@router.post("/account/passkeys/{passkey_id}/rename")
async def rename(
    request: Request,
    passkey_id: int,
    user: RecentPageUser,
    bastion: BastionDep,
    name: Annotated[str, Form(max_length=4 * PASSKEY_NAME_MAX_LENGTH)] = "",
) -> Response:
    account = await _account(bastion, user)
    try:
        renamed = await bastion.services.passkeys.rename(account, passkey_id, name, **_who(request))
    except UserError:
        return RedirectResponse(SECURITY_PAGE, status_code=303)
    if not renamed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=gettext("No such passkey."))
    return RedirectResponse(f"{SECURITY_PAGE}?done=passkey-renamed", status_code=303)


@router.post("/account/passkeys/{passkey_id}/remove")
async def remove(
    request: Request, passkey_id: int, user: RecentPageUser, bastion: BastionDep
) -> Response:
    account = await _account(bastion, user)
    if not await bastion.services.passkeys.remove(account, passkey_id, **_who(request)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=gettext("No such passkey."))
    return RedirectResponse(f"{SECURITY_PAGE}?done=passkey-removed", status_code=303)


async def passkeys_section(request: Request, bastion: Bastion, user_id: int) -> dict[str, Any]:
    """What ``account_passkeys.html`` shows: the user's passkeys and this module's notice."""
    return {
        "passkeys": await bastion.services.passkeys.list_for_user(user_id),
        "passkey_notice": NOTICES.get(request.query_params.get("done", "")),
    }


# -- sign-in with a passkey alone ----------------------------------------------------------


@router.post("/login/passkey/options")
async def sign_in_options(request: Request, bastion: BastionDep) -> Response:
    passkeys = bastion.services.passkeys
    options = await passkeys.authentication_options(
        _relying_party(request, bastion), _binding(request), ip=client_ip(request)
    )
    return JSONResponse(options)


@router.post("/login/passkey")
async def sign_in(request: Request, answer: SignInAnswer, bastion: BastionDep) -> Response:
    state = session_state(request.scope)
    try:
        use = await bastion.services.passkeys.sign_in(
            answer.credential,
            _relying_party(request, bastion),
            _binding(request),
            **_who(request),
        )
    except PasskeyRefused as error:
        return _refused(error)
    try:
        raw_id, session = await bastion.start_session(
            request,
            use.user,
            replaces=state.session.key if state.session else None,
            channel="web",
            method="passkey",
            amr=use.methods,
        )
    except EmailNotVerified:
        return JSONResponse(
            {"error": "email_not_verified", "detail": str(UNVERIFIED)}, status_code=403
        )
    bastion.send_session_cookie(request, raw_id, session)
    # A password step this browser left half done is over: it signed in another way.
    token = pending_token(request, bastion)
    if token is not None:
        await bastion.services.pending_sign_ins.discard(token)
        clear_pending_cookie(request, bastion)
    return JSONResponse({"redirect": safe_next(answer.next)})


# -- a passkey as the second step of a sign-in ----------------------------------------------


@router.post("/login/verify/passkey/options")
async def second_factor_options(request: Request, bastion: BastionDep) -> Response:
    state = session_state(request.scope)
    pending = await bastion.services.pending_sign_ins.peek(
        pending_token(request, bastion), channel="web", csrf_secret=state.csrf_secret
    )
    if pending is None:
        return _expired_json(request, bastion)
    return await _user_options(request, bastion, pending.user_id, "second-factor")


@router.post("/login/verify/passkey")
async def second_factor(request: Request, answer: SignInAnswer, bastion: BastionDep) -> Response:
    state = session_state(request.scope)
    pending_sign_ins = bastion.services.pending_sign_ins
    token = pending_token(request, bastion)
    pending = await pending_sign_ins.claim(token, channel="web", csrf_secret=state.csrf_secret)
    if pending is None or token is None:
        return _expired_json(request, bastion)
    check = _Check(request, bastion, answer.credential, "second-factor")
    try:
        user = await bastion.authenticator.check_second_factor(
            pending.user_id, check.run, method="passkey", channel="web", **_who(request)
        )
    except AuthenticationFailed:
        if not await pending_sign_ins.release(token, pending, wrong_code=True):
            return _expired_json(request, bastion)
        return JSONResponse({"error": "passkey_refused", "detail": str(REFUSED)}, status_code=400)
    except (RateLimited, StoreUnavailable):
        with contextlib.suppress(StoreUnavailable):
            await pending_sign_ins.release(token, pending, wrong_code=False)
        raise
    extra = tuple(m for m in check.methods if m == amr.USER_PRESENCE_VERIFIED)
    done = await finish_two_step(request, bastion, user, pending, "passkey", extra_amr=extra)
    return _as_json(done)


def _expired_json(request: Request, bastion: Bastion) -> JSONResponse:
    clear_pending_cookie(request, bastion)
    return JSONResponse({"error": "expired", "redirect": EXPIRED}, status_code=400)


# -- a passkey to re-authenticate -----------------------------------------------------------


@router.post("/reauth/passkey/options")
async def reauth_options(request: Request, user: BrowserUser, bastion: BastionDep) -> Response:
    return await _user_options(request, bastion, user.user_id, "reauth")


@router.post("/reauth/passkey")
async def reauth(
    request: Request, answer: SignInAnswer, user: BrowserUser, bastion: BastionDep
) -> Response:
    check = _Check(request, bastion, answer.credential, "reauth")
    try:
        await bastion.authenticator.check_second_factor(
            user.user_id, check.run, method="passkey", purpose=REAUTH_PURPOSE, **_who(request)
        )
    except AuthenticationFailed:
        return JSONResponse({"error": "passkey_refused", "detail": str(REFUSED)}, status_code=400)
    return _as_json(await reauthenticated(request, bastion, user, check.methods, answer.next))


# -- shared ----------------------------------------------------------------------------------


async def _user_options(
    request: Request, bastion: Bastion, user_id: int, purpose: Purpose
) -> Response:
    try:
        options = await bastion.services.passkeys.authentication_options(
            _relying_party(request, bastion), _binding(request), purpose=purpose, user_id=user_id
        )
    except PasskeyRefused as error:
        return _refused(error)
    return JSONResponse(options)


class _Check:
    """One passkey assertion as :meth:`Authenticator.check_second_factor` runs it: a
    refusal is a wrong "code" (counted against the account's back-off)."""

    def __init__(
        self, request: Request, bastion: Bastion, credential: dict[str, Any], purpose: Purpose
    ) -> None:
        self.request = request
        self.bastion = bastion
        self.credential = credential
        self.purpose = purpose
        self.methods: tuple[str, ...] = ()

    async def run(self, user: UserRecord) -> bool:
        try:
            use: PasskeyUse = await self.bastion.services.passkeys.verify(
                user.id,
                self.credential,
                _relying_party(self.request, self.bastion),
                _binding(self.request),
                purpose=self.purpose,
                **_who(self.request),
            )
        except PasskeyRefused as error:
            _log_refusal(error)
            return False
        self.methods = use.methods
        return True


def _as_json(response: Response) -> JSONResponse:
    """A page's answer (a redirect, with the new session's cookie set by the session
    middleware) as the script wants it: ``{"redirect": <where>}``."""
    location = response.headers.get("location")
    if location is None:
        return JSONResponse({"error": "passkey_refused", "detail": str(REFUSED)}, status_code=400)
    return JSONResponse({"redirect": location})
