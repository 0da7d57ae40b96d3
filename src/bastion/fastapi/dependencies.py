"""Who is asking: FastAPI dependencies for users' own routes and Bastion's.

A request is authenticated by exactly one credential. When an ``Authorization`` header is
present it alone counts (the session cookie is then ignored); otherwise the session cookie
counts. CSRF is decided apart from this (:class:`bastion.asgi.csrf.CSRFMiddleware`): only
a request with a Bearer header and none of Bastion's cookies skips it; one that carries a
Bastion cookie needs a CSRF token whatever else it carries, so browser code using bearer
tokens sends them without cookies (``credentials: "omit"``) or adds ``X-CSRF-Token``.

What an anonymous caller gets depends on the dependency: ``CurrentUser`` (APIs) answers
401; ``SignedInUser`` (the application's routes that browsers visit) sends a browser's
navigation to the sign-in page and answers 401 to everything else (see
:func:`is_browser_navigation`); Bastion's own pages (``PageUser``) are HTML only, read
the session cookie only and always send the visitor to sign in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, TypeVar
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from bastion.asgi.sessions import session_state
from bastion.i18n import gettext
from bastion.mfa.stepup import ReauthWindow
from bastion.sessions import Session

if TYPE_CHECKING:
    from bastion.fastapi.install import Bastion


TOKEN_URL = "/api/token"  # noqa: S105 - a URL, not a secret

D = TypeVar("D")
# Marks on dependencies, read by @cached (bastion.fastapi.caching) when it walks an
# endpoint's dependency graph: explicit, so that no dependency is recognised by its name.
PRINCIPAL_MARK = "__bastion_principal__"
NO_IDENTITY_MARK = "__bastion_reads_no_identity__"
# How a browser-facing dependency chose to answer this request: "page" (a browser's
# navigation) or "json" (an API client). The error handlers read it, so the route's 401,
# 403 and later errors take the same form as that choice.
ANSWER_KEY = "bastion.answer"


def principal_dependency(dependency: D) -> D:
    """Mark ``dependency`` as one that authenticates the caller and returns its
    :class:`Principal` (or None): what ``@cached`` keys a user- or role-scoped entry on."""
    setattr(dependency, PRINCIPAL_MARK, True)
    return dependency


def is_principal_dependency(dependency: object) -> bool:
    return getattr(dependency, PRINCIPAL_MARK, False) is True


def reads_no_identity(dependency: D) -> D:
    """Vouch that ``dependency``, although it takes the ``Request`` (or ``HTTPConnection``),
    reads nothing about the caller from it: no session, cookie, ``Authorization`` header,
    address or other header that tells callers apart.

    ``@cached(scope="public")`` refuses endpoints whose dependencies could read the caller,
    and any dependency taking the request could; this lets an application's identity-free
    dependencies (app state, settings, a database handle) through. Its sub-dependencies are
    still checked. Vouching wrongly lets one caller's answer reach everyone.
    """
    setattr(dependency, NO_IDENTITY_MARK, True)
    return dependency


def is_vouched_identity_free(dependency: object) -> bool:
    return getattr(dependency, NO_IDENTITY_MARK, False) is True


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in user as far as this request is concerned."""

    user_id: int
    username: str
    roles: frozenset[str]
    session: Session
    via: str  # "session" or "bearer"

    @property
    def session_id(self) -> str:
        return self.session.key

    def has_role(self, role: str) -> bool:
        return role in self.roles


class LoginRequired(Exception):
    """A page needs a signed-in user; answered with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class ReauthRequired(Exception):
    """A browser asked for a sensitive action outside the re-authentication window;
    answered with a redirect to ``/reauth?next=<next_path>``."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class EnrolmentRequired(Exception):
    """A browser whose session may only set up a second factor (``BASTION_MFA``) asked for
    another page; answered with a redirect to :data:`ENROLMENT_PAGE`."""


ENROLMENT_PAGE = "/account/security"
# What a session flagged ``mfa_enrolment`` may reach through these dependencies: the pages
# (and JSON calls) that add a second factor, and /reauth (adding one is a sensitive action).
# /logout and static files need no dependency of these.
ENROLMENT_PATHS = frozenset(
    {ENROLMENT_PAGE, "/account/totp", "/account/passkeys", "/account/passkeys/options", "/reauth"}
)
ENROLMENT_MESSAGE = (
    "this account must set up a second factor before it can do anything else: "
    f"sign in on the web and add one at {ENROLMENT_PAGE}"
)


def _enrolment_gate(request: Request, principal: Principal | None, *, page: bool) -> None:
    """Refuse an enrolment session anything but enrolment: a page (or a browser's
    navigation) is redirected to the enrolment page, anything else gets 403."""
    if principal is None or not principal.session.mfa_enrolment:
        return
    if request.url.path in ENROLMENT_PATHS:
        return
    if page:
        raise EnrolmentRequired
    raise HTTPException(status.HTTP_403_FORBIDDEN, detail=ENROLMENT_MESSAGE)


def prefers_html(accept: str | None) -> bool:
    """Whether an ``Accept`` header ranks ``text/html`` above ``application/json`` (by the
    q-value of the most specific range matching each, RFC 9110 section 12.5.1). Browsers
    loading a page do; ``fetch``, ``curl`` and API clients send ``*/*``, JSON or nothing,
    which rank both the same or JSON first."""
    if not accept:
        return False
    ranges = _media_ranges(accept)
    html = _quality(ranges, "text", "html")
    return html > 0 and html > _quality(ranges, "application", "json")


def _media_ranges(accept: str) -> list[tuple[str, str, float]]:
    ranges = []
    for item in accept.split(","):
        media, *params = item.split(";")
        kind, _, subtype = media.strip().lower().partition("/")
        if not kind or not subtype:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0:  # also NaN
                    quality = 0.0
        ranges.append((kind, subtype, quality))
    return ranges


def _quality(ranges: list[tuple[str, str, float]], kind: str, subtype: str) -> float:
    best, quality = -1, 0.0
    for range_kind, range_subtype, range_quality in ranges:
        if (range_kind, range_subtype) == (kind, subtype):
            specificity = 2
        elif (range_kind, range_subtype) == (kind, "*"):
            specificity = 1
        elif (range_kind, range_subtype) == ("*", "*"):
            specificity = 0
        else:
            continue
        if specificity > best:
            best, quality = specificity, range_quality
    return quality


def is_browser_navigation(request: Request) -> bool:
    """Whether an anonymous caller is better sent to the sign-in page than answered 401:
    a browser loading a page (``Accept`` prefers HTML to JSON). A request with an
    ``Authorization`` header is an API client whatever it accepts: its token decides."""
    if "authorization" in request.headers:
        return False
    return prefers_html(", ".join(request.headers.getlist("accept")))


def requested_path(request: Request) -> str:
    """Where to come back after signing in: the path and query as the client sent them
    (percent-encoded; the login page keeps it only if it is a same-origin path)."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def return_path(request: Request) -> str:
    """Where ``/reauth`` sends a browser back to after a sensitive action was held back.

    A GET (or HEAD) comes back to itself, its query intact. Another method's body cannot
    be replayed by a redirect, nor should it be: the user proves who they are, then sends
    the form again knowingly. So it goes back to the page the form was on, the
    ``Referer``'s path and query when the ``Referer`` is this very origin (Bastion's pages
    send it to their own origin), else "" (``/reauth`` then falls back to the dashboard).
    """
    if request.method in ("GET", "HEAD"):
        return requested_path(request)
    referer = urlsplit(request.headers.get("referer", ""))
    own = urlsplit(str(request.base_url))
    if (referer.scheme, referer.netloc.lower()) != (own.scheme, own.netloc.lower()):
        return ""
    if not referer.path.startswith("/"):
        return ""
    return f"{referer.path}?{referer.query}" if referer.query else referer.path


def principal_from_session(session: Session | None, via: str = "session") -> Principal | None:
    if session is None:
        return None
    return Principal(
        user_id=session.user_id,
        username=session.username,
        roles=frozenset(session.roles),
        session=session,
        via=via,
    )


def client_ip(request: Request) -> str | None:
    """The client's address (after trusted-proxy handling)."""
    return request.client.host if request.client else None


@reads_no_identity
def get_bastion(request: Request) -> Bastion:
    bastion: Bastion = request.app.state.bastion
    return bastion


def _unauthorized(error: str | None = None, description: str = "") -> HTTPException:
    challenge = "Bearer"
    if error:
        challenge += f' error="{error}"'
        if description:
            challenge += f', error_description="{description}"'
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail=description or "authentication required",
        headers={"WWW-Authenticate": challenge},
    )


async def _authenticate(request: Request) -> Principal | None:
    authorization = request.headers.get("authorization")
    if authorization is not None:
        verify = getattr(request.app.state.bastion, "verify_bearer", None)
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip() or verify is None:
            raise _unauthorized("invalid_request", "unsupported authorization")
        principal: Principal | None = await verify(credentials.strip())
        if principal is None:
            raise _unauthorized("invalid_token", "the access token is invalid or expired")
        return principal
    return principal_from_session(session_state(request.scope).session)


@principal_dependency
class _Authentication(OAuth2PasswordBearer):
    """The credential check as a single dependency. Being an OAuth2 security scheme, it
    also declares the password flow in OpenAPI (so "Authorize" in /docs works) without a
    second dependency to solve on every request.

    ``required``: an anonymous caller is refused (else the dependency gives None).
    ``browser``: the refusal is chosen per request, a browser's navigation is sent to
    sign in and anything else gets the 401 (see :func:`is_browser_navigation`).
    """

    def __init__(self, *, required: bool, browser: bool = False) -> None:
        super().__init__(tokenUrl=TOKEN_URL, auto_error=False, scheme_name="OAuth2Password")
        self.required = required
        self.browser = browser

    async def __call__(self, request: Request) -> Principal | None:  # type: ignore[override]
        navigation = False
        if self.browser:
            navigation = is_browser_navigation(request)
            request.scope[ANSWER_KEY] = "page" if navigation else "json"
        principal = await _authenticate(request)
        if principal is None and self.required:
            if navigation:
                raise LoginRequired(requested_path(request))
            raise _unauthorized()
        if not self.required and principal is not None and principal.session.mfa_enrolment:
            # Nothing but enrolment: where a signed-in user is optional, it is nobody.
            return None if request.url.path not in ENROLMENT_PATHS else principal
        _enrolment_gate(request, principal, page=navigation)
        return principal


optional_user = _Authentication(required=False)
current_user = _Authentication(required=True)
signed_in_user = _Authentication(required=True, browser=True)


@principal_dependency
async def page_user(request: Request) -> Principal:
    """The signed-in user of one of Bastion's own pages. They are HTML only and, as the
    contract says, authenticated by the session cookie alone (their forms and navigation
    come from it), so every anonymous visitor is sent to the login page."""
    principal = principal_from_session(session_state(request.scope).session)
    if principal is None:
        raise LoginRequired(requested_path(request))
    _enrolment_gate(request, principal, page=True)
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]
"""The signed-in user of an API route (bearer token or session cookie); 401 otherwise."""
OptionalUser = Annotated[Principal | None, Depends(optional_user)]
"""The signed-in user, or None for an anonymous caller."""
SignedInUser = Annotated[Principal, Depends(signed_in_user)]
"""The signed-in user of a route that browsers visit: an anonymous browser loading the
page is sent (303) to ``/login?next=<path>``; API clients, ``fetch`` and ``*/*`` get 401
with ``WWW-Authenticate: Bearer``. Errors of such a route answer in the same form."""
PageUser = Annotated[Principal, Depends(page_user)]


def _authentication_for(
    *, browser: bool, page: bool
) -> Callable[[Request], Awaitable[Principal | None]]:
    if browser and page:
        raise ValueError("choose browser=True or page=True, not both")
    return page_user if page else signed_in_user if browser else current_user


def require_role(
    role: str, *, browser: bool = False, page: bool = False
) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that admits only users holding ``role``: 403 for the others.

    By default it authenticates like ``CurrentUser`` (APIs). ``browser=True`` is for routes
    that browsers visit and authenticates like ``SignedInUser``: anonymous browsers are
    sent to sign in, and the 403 is a page for a browser, JSON for an API client.
    ``page=True`` is for Bastion's own pages (like ``PageUser``).
    """
    authenticate = _authentication_for(browser=browser, page=page)

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        assert principal is not None  # required: they raise instead of returning None
        _check_role(principal, role)
        return principal

    return principal_dependency(dependency)


def _check_role(principal: Principal, role: str | None) -> None:
    if role is not None and not principal.has_role(role):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=gettext("You may not do this."))


# RFC 9470 section 3: the access token's authentication is too old for this resource.
INSUFFICIENT_USER_AUTHENTICATION = "insufficient_user_authentication"


def require_recent_auth(
    *, role: str | None = None, browser: bool = False, page: bool = False
) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency for sensitive actions ("sudo mode"): the user must have signed in or
    re-authenticated within ``BASTION_REAUTH_WINDOW`` seconds; with ``role``, must also
    hold it (403 otherwise, before the window is looked at).

    It authenticates like :func:`require_role` (``CurrentUser`` by default,
    ``SignedInUser`` with ``browser=True``, ``PageUser`` with ``page=True``). Outside the
    window, a browser's navigation or form (``page=True``: always) is sent (303) to
    ``/reauth?next=<back>``, where ``<back>`` is the request itself for a GET and the page
    the form was on for a POST (:func:`return_path`); anything else gets 401 with
    ``WWW-Authenticate: Bearer error="insufficient_user_authentication",
    error_description="...", max_age="<window>"`` (RFC 9470). A bearer client
    re-authenticates at the token endpoint (a new sign-in starts a new session; refreshing
    tokens does not restart the window), a cookie one at ``/reauth``.
    """
    authenticate = _authentication_for(browser=browser, page=page)

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        assert principal is not None  # required: they raise instead of returning None
        _check_role(principal, role)
        bastion = get_bastion(request)
        window = ReauthWindow(bastion.settings.reauth_window, bastion.services.clock)
        if window.is_open(principal.session):
            return principal
        if page or request.scope.get(ANSWER_KEY) == "page":
            raise ReauthRequired(return_path(request))
        raise _insufficient_authentication(principal, window.seconds)

    return principal_dependency(dependency)


def _insufficient_authentication(principal: Principal, window: int) -> HTTPException:
    if principal.via == "bearer":
        description = (
            "a more recent sign-in is required: sign in again at /api/token "
            "(refreshing the tokens does not restart the re-authentication window)"
        )
    else:
        description = "a more recent sign-in is required: confirm it is you at /reauth"
    challenge = (
        f'Bearer error="{INSUFFICIENT_USER_AUTHENTICATION}", '
        f'error_description="{description}", max_age="{window}"'
    )
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail=description,
        headers={"WWW-Authenticate": challenge},
    )


recent_user = require_recent_auth(browser=True)
RecentUser = Annotated[Principal, Depends(recent_user)]
"""``SignedInUser`` for a sensitive action: also signed in or re-authenticated within
``BASTION_REAUTH_WINDOW`` (else a browser goes to ``/reauth``, an API client gets 401 with
RFC 9470's ``insufficient_user_authentication``)."""
RecentPageUser = Annotated[Principal, Depends(require_recent_auth(page=True))]
"""``PageUser`` for Bastion's own pages of sensitive actions."""
