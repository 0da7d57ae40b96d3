"""Sign-in with external providers, and the connections page (``/account/connections``).

Thin routes over :class:`bastion.federation.service.Federation` (``services.federation``),
which checks everything the provider says. Here: which browser may finish a flow (the
request is bound to its CSRF secret, the pre-session of an anonymous visitor), where it
goes next, the session (or the second step) that a good answer gives, and the pages.

Connecting a provider to a signed-in account starts with a CSRF-protected POST from
``/account/connections`` that needs a recent sign-in, never with a GET: a link on another
site must not be able to start linking in a signed-in browser.
"""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from bastion.asgi.sessions import session_state
from bastion.exceptions import RateLimited
from bastion.fastapi.api import link_base
from bastion.fastapi.dependencies import PageUser, RecentPageUser, client_ip
from bastion.fastapi.errors import throttled_message
from bastion.fastapi.install import Bastion, BastionDep
from bastion.fastapi.pages import UNVERIFIED
from bastion.fastapi.recovery import resend_ticket
from bastion.fastapi.two_step import start_enrolment_session, start_two_step
from bastion.federation.config import ProviderConfig
from bastion.federation.errors import (
    FederationError,
    IdentityTaken,
    LastSignInMethod,
    LinkNeedsPassword,
    ProviderUnavailable,
    SignInRefused,
)
from bastion.federation.flow import Callback, ExternalProfile, Intent
from bastion.i18n import LazyText, gettext, lazy
from bastion.mfa.policy import second_factor_required
from bastion.recovery import EmailNotVerified
from bastion.redirects import safe_next
from bastion.users.repository import UserRecord

log = logging.getLogger("bastion.security")
router = APIRouter(include_in_schema=False)
# An OAuth error code as providers send them (RFC 6749 section 4.1.2.1: access_denied, ...).
ERROR_CODE = re.compile(r"[a-z_]{1,40}")
CONNECTIONS = "/account/connections"
CONNECTION_NOTICES = {
    "linked": lazy("The account was connected. You can now sign in with it."),
    "unlinked": lazy("The account was disconnected."),
}


def _provider(bastion: Bastion, name: str) -> ProviderConfig:
    provider = bastion.services.federation.providers.get(name)
    if provider is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return provider


def _redirect_uri(bastion: Bastion, request: Request, provider: ProviderConfig) -> str:
    """Where the provider sends the browser back: from ``BASTION_PUBLIC_URL`` (in
    development, this request's origin). Production without it has no trustworthy origin
    (the Host header must not choose it), so the provider is unavailable."""
    base = link_base(bastion, request)
    if base is None:
        log.warning("provider %s: BASTION_PUBLIC_URL is not set", provider.name)
        raise ProviderUnavailable(provider.name, "BASTION_PUBLIC_URL is not set")
    return f"{base}/login/oauth/{provider.name}/callback"


def _unavailable(provider: ProviderConfig, error: ProviderUnavailable) -> HTTPException:
    log.warning("provider %s unavailable: %s", provider.name, error.detail or "no detail")
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        detail=gettext(
            "%(provider)s is not answering right now, so signing in with it does not work. "
            "Try again in a few minutes, or sign in another way.",
            provider=provider.label,
        ),
    )


def _refused(provider: ProviderConfig, error: FederationError) -> HTTPException:
    # The reason is logged (it names the check that failed); the page says only what the
    # user can act on. The provider's error code is shown (and logged) only when it looks
    # like one (access_denied): the query string is anyone's to write.
    code = error.code if error.code and ERROR_CODE.fullmatch(error.code) else None
    log.info(
        "provider %s answer refused: %s%s",
        provider.name,
        error.reason,
        f" ({code})" if code else " (with an error)" if error.code else "",
    )
    label = provider.label
    if code == "access_denied":
        text = gettext(
            "%(provider)s did not sign you in: access was denied or cancelled. Please try again.",
            provider=label,
        )
    elif code:
        text = gettext(
            "%(provider)s did not sign you in (it answered %(code)s). Please try again.",
            provider=label,
            code=code,
        )
    elif error.code:
        text = gettext("%(provider)s did not sign you in. Please try again.", provider=label)
    else:
        text = gettext(
            "Signing in with %(provider)s did not work: the answer was not valid for this "
            "browser, or it was used already or came too late. Please try again.",
            provider=label,
        )
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail=text)


async def _begin(
    request: Request,
    bastion: Bastion,
    provider: ProviderConfig,
    *,
    next: str,
    intent: Intent,
    user_id: int | None = None,
) -> RedirectResponse:
    binding = session_state(request.scope).ensure_csrf_secret()
    try:
        url = await bastion.services.federation.begin(
            provider.name,
            binding=binding,
            redirect_uri=_redirect_uri(bastion, request, provider),
            next=next,
            intent=intent,
            user_id=user_id,
        )
    except ProviderUnavailable as error:
        raise _unavailable(provider, error) from error
    return RedirectResponse(url, status_code=302)


@router.get("/login/oauth/{name}")
async def begin_sign_in(
    name: str, request: Request, bastion: BastionDep, next: str = ""
) -> RedirectResponse:
    provider = _provider(bastion, name)
    return await _begin(request, bastion, provider, next=safe_next(next), intent="sign_in")


@router.get("/login/oauth/{name}/callback")
async def callback(name: str, request: Request, bastion: BastionDep) -> Response:
    provider = _provider(bastion, name)
    state = session_state(request.scope)
    binding = state.csrf_secret
    try:
        if binding is None:
            raise FederationError("the browser has no pre-session")
        answer = await bastion.services.federation.complete(
            name,
            binding=binding,
            params=dict(request.query_params),
            redirect_uri=_redirect_uri(bastion, request, provider),
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except FederationError as error:
        raise _refused(provider, error) from error
    except ProviderUnavailable as error:
        raise _unavailable(provider, error) from error
    if answer.intent == "link":
        return await _link(request, bastion, provider, answer)
    return await _sign_in(request, bastion, provider, answer)


async def _sign_in(
    request: Request, bastion: Bastion, provider: ProviderConfig, answer: Callback
) -> Response:
    profile = answer.profile
    next = safe_next(answer.next)
    try:
        resolution = await bastion.services.federation.resolve(
            profile,
            registration_open=bastion.settings.registration == "open",
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except SignInRefused as refused:
        return _login_page(request, bastion, next, _refusal(provider, refused))
    except LinkNeedsPassword:
        return _login_page(request, bastion, next, _needs_password(provider, profile))
    except RateLimited as limited:  # new accounts from this network
        return _login_page(
            request,
            bastion,
            next,
            throttled_message(limited.retry_after),
            status_code=429,
            headers={"Retry-After": str(limited.retry_after)},
        )
    user = resolution.user
    return await _start(request, bastion, provider, user, profile, next)


async def _start(
    request: Request,
    bastion: Bastion,
    provider: ProviderConfig,
    user: UserRecord,
    profile: ExternalProfile,
    next: str,
) -> Response:
    """The provider proved who ``user`` is: the session, or the second step first (as
    after a password), unless the provider says it checked more than one factor and its
    ``_TRUST_MFA`` is on."""
    state = session_state(request.scope)
    ip, user_agent = client_ip(request), request.headers.get("user-agent")
    federation = bastion.services.federation
    # The provider's own "more than one factor" (amr/acr) counts only with its _TRUST_MFA.
    trusted_mfa = federation.mfa_satisfied(profile)
    try:
        if not trusted_mfa:
            if (await bastion.services.mfa.summary(user.id)).has_any:
                # No session before the second factor; an unverified address is said now,
                # as it would be to a user without one.
                await bastion.services.recovery.require_verified(
                    user, ip=ip, user_agent=user_agent, channel="web"
                )
                return await start_two_step(
                    request,
                    bastion,
                    user,
                    remember=False,
                    next=next,
                    methods=federation.session_amr(profile),
                )
            if second_factor_required(bastion.settings.mfa, user.roles):
                return await start_enrolment_session(request, bastion, user, remember=False)
        raw_id, session = await bastion.start_session(
            request,
            user,
            replaces=state.session.key if state.session else None,
            channel="web",
            method=f"oauth:{provider.name}",
            amr=federation.session_amr(profile),
        )
    except EmailNotVerified:
        # As after a right password: said only to whoever proved to be this user.
        context = {
            "next": next,
            "error": UNVERIFIED,
            "error_fields": (),
            "resend_ticket": resend_ticket(bastion, user),
        }
        return bastion.templates.render(request, "login.html", context, status_code=403)
    bastion.send_session_cookie(request, raw_id, session)
    return RedirectResponse(next, status_code=303)


def _login_page(
    request: Request,
    bastion: Bastion,
    next: str,
    error: str | LazyText,
    *,
    status_code: int = 403,
    headers: dict[str, str] | None = None,
) -> Response:
    """The sign-in page, saying why the provider's sign-in gave no session (about no
    field of its form)."""
    context = {"next": next if next != safe_next("") else "", "error": error, "error_fields": ()}
    return bastion.templates.render(
        request, "login.html", context, status_code=status_code, headers=headers
    )


def _refusal(provider: ProviderConfig, refused: SignInRefused) -> str:
    if refused.reason == "disabled":
        return gettext(
            "The account connected to this %(provider)s account cannot sign in.",
            provider=provider.label,
        )
    return _no_account(provider)


def _no_account(provider: ProviderConfig) -> str:
    return gettext(
        "No account here can be signed in to with this %(provider)s account, and new "
        "accounts cannot be made with it. If you have an account here, sign in with its "
        "password, then connect %(provider)s on the Connections page of your account.",
        provider=provider.label,
    )


def _needs_password(provider: ProviderConfig, profile: ExternalProfile) -> str:
    # Saying that an account with this address exists tells it to whoever signs in. That
    # is fine only when the provider verified that the address is theirs (email_verified):
    # then it is their own account, or their address. Otherwise the page is the same as
    # for no account at all, so an unverified claim of someone's address learns nothing.
    if not profile.email_verified or not profile.email:
        return _no_account(provider)
    return gettext(
        "An account with the address %(address)s already exists here. Sign in with its "
        "password, then connect %(provider)s on the Connections page of your account.",
        address=profile.email,
        provider=provider.label,
    )


async def _link(
    request: Request, bastion: Bastion, provider: ProviderConfig, answer: Callback
) -> Response:
    session = session_state(request.scope).session
    # The flow began in this browser's session (the binding); it must still be that user's.
    if session is None or answer.user_id is None or session.user_id != answer.user_id:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail=gettext(
                "Connecting %(provider)s did not work: you are no longer signed in as the "
                "user who started it. Sign in and try again.",
                provider=provider.label,
            ),
        )
    try:
        await bastion.services.federation.link(
            session.user_id,
            answer.profile,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except IdentityTaken:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail=gettext(
                "This %(provider)s account is already connected to another account here, or "
                "yours already has a %(provider)s account connected. Nothing changed.",
                provider=provider.label,
            ),
        ) from None
    return RedirectResponse(f"{CONNECTIONS}?done=linked", status_code=303)


@router.get(CONNECTIONS)
async def connections_page(request: Request, user: PageUser, bastion: BastionDep) -> Response:
    return await _connections(request, bastion, user.user_id)


async def _connections(
    request: Request,
    bastion: Bastion,
    user_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    federation = bastion.services.federation
    providers = federation.providers
    identities = await federation.identities_of(user_id)
    linked = {identity.provider for identity in identities}
    rows = [
        {
            "identity": identity,
            "label": providers[identity.provider].label
            if identity.provider in providers
            else identity.provider,
        }
        for identity in identities
    ]
    context = {
        "rows": rows,
        "available": [p for p in providers.values() if p.name not in linked],
        "error": error,
        "notice": CONNECTION_NOTICES.get(request.query_params.get("done", "")),
    }
    return bastion.templates.render(
        request, "account_connections.html", context, status_code=status_code
    )


@router.post(CONNECTIONS + "/{name}/link")
async def link_start(
    name: str, request: Request, user: RecentPageUser, bastion: BastionDep
) -> Response:
    provider = _provider(bastion, name)
    start = await _begin(
        request, bastion, provider, next=CONNECTIONS, intent="link", user_id=user.user_id
    )
    # Not a redirect: browsers hold a form's submission to the CSP form-action of the page
    # it came from ('self'), redirects included, so a 302 to the provider goes nowhere.
    # A page of ours goes on by itself (a navigation of its own, which form-action leaves
    # alone).
    context = {"url": start.headers["location"], "label": provider.label}
    return bastion.templates.render(request, "provider_continue.html", context)


@router.post(CONNECTIONS + "/{name}/unlink")
async def unlink(
    name: str,
    request: Request,
    user: RecentPageUser,
    bastion: BastionDep,
) -> Response:
    try:
        removed = await bastion.services.federation.unlink(
            user.user_id,
            name,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except LastSignInMethod:
        return await _connections(
            request,
            bastion,
            user.user_id,
            error=gettext(
                "This is the only way left to sign in to your account, so it stays "
                "connected. Set a password or add a passkey first."
            ),
            status_code=400,
        )
    if not removed:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return RedirectResponse(f"{CONNECTIONS}?done=unlinked", status_code=303)
