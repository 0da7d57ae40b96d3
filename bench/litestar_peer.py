# Litestar is installed by hand, for this bench only, so CI type-checks this file without it:
# its imports are then Any and its route decorators untyped.
# mypy: disable-error-code="import-not-found, untyped-decorator"
"""The Litestar 2 peer that `bench/run.py --peer litestar` measures beside Bastion (issue #18).

    .venv/bin/pip install 'litestar[standard]<3'    # by hand: not a Bastion dependency
    LITESTAR_PEER_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn litestar_peer:create --factory

Litestar's own features, as its documentation shows them, with their state in Redis
(`litestar.stores.redis.RedisStore` on `LITESTAR_PEER_REDIS_URL`, keys under
`LITESTAR_PEER_PREFIX`):

- `/session/me`: server-side sessions (`ServerSideSessionConfig` through `SessionAuth`); the
  user is the dict the session holds: one store read per request (and Litestar's session
  middleware writes the session back on every response). Bastion's `/api/me` by cookie.
- `/jwt/me`: `JWTAuth`; its `retrieve_user_handler` builds the user from the verified token
  alone, no store read: an "unchecked" JWT, which a revoked session does not stop until the
  token expires. Bastion's `/api/me` by bearer token (which does check the session).
- `/session/profile`: the response cache (`cache=300` on the route, on the Redis store), keyed
  per user like Bastion's `@cached(scope="user")` `/api/profile`, behind the same session.
- `/bare`: a Litestar route outside both auth layers and the session middleware.
- `POST /login` (JSON `username`, `password`): starts the session (its cookie) and answers
  a token for `/jwt/me`. The bench password is compared as is, no hashing: sign-in is not
  what is measured.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar, Request, get, post
from litestar.config.response_cache import ResponseCacheConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.security.jwt import JWTAuth, Token
from litestar.security.session_auth import SessionAuth
from litestar.stores.redis import RedisStore

USERNAME = "speedy"
PASSWORD = os.environ.get("LITESTAR_PEER_PASSWORD", "benchmark password 1")
# The token secret: run.py passes one; a random one otherwise (tokens then die with the process).
SECRET = os.environ.get("LITESTAR_PEER_SECRET") or secrets.token_hex(32)
REDIS_URL = os.environ.get("LITESTAR_PEER_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("LITESTAR_PEER_PREFIX", "litestar-peer")

# The user as Bastion's /api/me shows it; the session holds it, the token carries it.
User = dict[str, Any]


async def user_from_session(
    session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]
) -> User | None:
    """SessionAuth's retrieve_user_handler: the user is what the session (already read from the
    store by the session middleware) holds."""
    user: User | None = session.get("user")
    return user


async def user_from_token(token: Token, connection: ASGIConnection[Any, Any, Any, Any]) -> User:
    """JWTAuth's retrieve_user_handler: from the verified token alone, with no store read."""
    return {"username": token.sub, **token.extras}


def per_user(request: Request[User, Any, Any]) -> str:
    """The response cache's key: one entry per user and path, as Bastion's scope="user"."""
    return f"{request.user['username']}:{request.url.path}"


@post("/login")
async def login(request: Request[Any, Any, Any], data: dict[str, str]) -> dict[str, str]:
    """Start a session (its cookie) and answer a token for /jwt/me."""
    if data.get("username") != USERNAME or not hmac.compare_digest(
        data.get("password", "").encode(), PASSWORD.encode()
    ):
        raise NotAuthorizedException("wrong username or password")
    session_id = secrets.token_urlsafe(16)
    user: User = {
        "username": USERNAME,
        "email": "speedy@example.com",
        "email_verified": True,
        "amr": ["pwd"],
        "auth_time": int(time.time()),
        "roles": ["user"],
        "session_id": session_id,
    }
    request.set_session({"user": user})
    extras = {key: value for key, value in user.items() if key != "username"}
    return {"access_token": jwt_auth.create_token(identifier=USERNAME, token_extras=extras)}


@get("/session/me")
async def session_me(request: Request[User, dict[str, Any], Any]) -> User:
    user: User = request.user
    return user


@get("/jwt/me")
async def jwt_me(request: Request[User, Token, Any]) -> User:
    user: User = request.user
    return user


@get("/session/profile", cache=300, cache_key_builder=per_user)
async def profile(request: Request[User, dict[str, Any], Any]) -> dict[str, Any]:
    user = request.user
    return {"username": user["username"], "roles": user["roles"], "cached_at": datetime.now(UTC)}


@get("/bare")
async def bare() -> dict[str, str]:
    return {"status": "ok"}


# Each auth layer covers its own routes only: a Litestar app with one of them would not run
# the other, and /bare runs neither (nor the session middleware, which writes a session to the
# store on every response it passes).
session_config = ServerSideSessionConfig(exclude=["^/bare$", "^/jwt/"])
session_auth = SessionAuth[User, Any](
    retrieve_user_handler=user_from_session,
    session_backend_config=session_config,
    exclude=["^/login$", "^/bare$", "^/jwt/"],
)
jwt_auth = JWTAuth[User](
    retrieve_user_handler=user_from_token,
    token_secret=SECRET,
    exclude=["^/login$", "^/bare$", "^/session/"],
)


def create() -> Litestar:
    """The factory `uvicorn litestar_peer:create --factory` calls."""
    root = RedisStore.with_client(url=REDIS_URL, namespace=PREFIX)
    return Litestar(
        route_handlers=[login, session_me, jwt_me, profile, bare],
        on_app_init=[session_auth.on_app_init, jwt_auth.on_app_init],
        # Registered stores are closed with the app's lifespan.
        stores={
            "sessions": root.with_namespace("sessions"),
            "response_cache": root.with_namespace("cache"),
        },
        response_cache_config=ResponseCacheConfig(store="response_cache"),
    )
