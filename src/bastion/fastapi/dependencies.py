"""Who is asking: FastAPI dependencies for users' own routes and Bastion's.

A request is authenticated by exactly one credential. When an ``Authorization`` header is
present it alone counts (the session cookie is then ignored); otherwise the session cookie
counts. CSRF is decided apart from this (:class:`bastion.asgi.csrf.CSRFMiddleware`): only
a request with a Bearer header and none of Bastion's cookies skips it; one that carries a
Bastion cookie needs a CSRF token whatever else it carries, so browser code using bearer
tokens sends them without cookies (``credentials: "omit"``) or adds ``X-CSRF-Token``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from bastion.asgi.sessions import session_state
from bastion.sessions import Session

if TYPE_CHECKING:
    from bastion.fastapi.install import Bastion


TOKEN_URL = "/api/token"  # noqa: S105 - a URL, not a secret

D = TypeVar("D")
# Marks on dependencies, read by @cached (bastion.fastapi.caching) when it walks an
# endpoint's dependency graph: explicit, so that no dependency is recognised by its name.
PRINCIPAL_MARK = "__bastion_principal__"
NO_IDENTITY_MARK = "__bastion_reads_no_identity__"


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
    second dependency to solve on every request."""

    def __init__(self, *, required: bool) -> None:
        super().__init__(tokenUrl=TOKEN_URL, auto_error=False, scheme_name="OAuth2Password")
        self.required = required

    async def __call__(self, request: Request) -> Principal | None:  # type: ignore[override]
        principal = await _authenticate(request)
        if principal is None and self.required:
            raise _unauthorized()
        return principal


optional_user = _Authentication(required=False)
current_user = _Authentication(required=True)


@principal_dependency
async def page_user(request: Request) -> Principal:
    """The signed-in user of a page; anonymous visitors are sent to the login page."""
    principal = principal_from_session(session_state(request.scope).session)
    if principal is None:
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        raise LoginRequired(path)
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]
OptionalUser = Annotated[Principal | None, Depends(optional_user)]
PageUser = Annotated[Principal, Depends(page_user)]


def require_role(role: str, *, page: bool = False) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that admits only users holding ``role`` (403 for the others)."""

    async def dependency(request: Request) -> Principal:
        found = await (page_user(request) if page else current_user(request))
        assert found is not None  # current_user raises instead of returning None
        principal = found
        if not principal.has_role(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="You may not do this.")
        return principal

    return principal_dependency(dependency)
