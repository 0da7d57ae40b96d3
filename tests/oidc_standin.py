"""A stand-in OpenID Connect provider on a loopback port, for the answers a certified
provider never gives: tampered, expired or misaddressed ID tokens, unknown keys, outages.

It serves discovery, a JWK set, an authorization endpoint that consents at once as
``person`` (302 back with a code, or with ``error=deny`` when ``deny`` is set), a token
endpoint that checks the code, the client and the PKCE verifier and returns an ID token
signed with its own key (503 while ``fail_token``), and user info. ``tweak`` changes the
next ID token (claims, header, key); ``mode`` makes every endpoint fail (``down``: 503)
or hang.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.live import free_port

CLIENT_ID = "bastion-test"
CLIENT_SECRET = "stand-in-secret"


def new_key(kid: str) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": kid, "use": "sig", "alg": "RS256"}


@dataclass
class Tweak:
    """Changes to the next ID token: ``claims`` merged in (a value None removes the claim),
    ``header`` merged in, ``key`` to sign with instead, ``raw`` to send as it is."""

    claims: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)
    key: Any = None
    raw: Callable[[str], str] | None = None


@dataclass
class Person:
    """Who signs in at the stand-in: the claims of its ID tokens and user info."""

    sub: str = "jane-1"
    email: str | None = "jane@example.org"
    email_verified: bool | None = True
    preferred_username: str | None = "jane"
    name: str | None = "Jane Example"
    amr: list[str] | None = None
    acr: str | None = None

    def claims(self) -> dict[str, Any]:
        values = {
            "email": self.email,
            "email_verified": self.email_verified,
            "preferred_username": self.preferred_username,
            "name": self.name,
            "amr": self.amr,
            "acr": self.acr,
        }
        return {key: value for key, value in values.items() if value is not None}


@dataclass
class StandInIssuer:
    url: str = ""
    person: Person = field(default_factory=Person)
    deny: str | None = None  # an OAuth error code the authorization endpoint answers with
    fail_token: bool = False  # the token endpoint answers 503
    mode: str = "ok"  # "ok", "down" (503 everywhere), "hang" (no answer)
    tweak: Tweak | None = None
    jwks_requests: int = 0
    kid: str = "key-1"
    private_key: Any = None
    public_jwks: list[dict[str, Any]] = field(default_factory=list)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.url

    def rotate(self, kid: str) -> None:
        """A new signing key, published in place of the old one."""
        self.kid = kid
        self.private_key, public = new_key(kid)
        self.public_jwks = [public]

    def id_token(self, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.person.sub,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            **self.person.claims(),
        }
        header: dict[str, Any] = {"kid": self.kid}
        key = self.private_key
        tweak, self.tweak = self.tweak, None
        if tweak is not None:
            claims.update(tweak.claims)
            header.update(tweak.header)
            key = tweak.key or key
        claims = {k: v for k, v in claims.items() if v is not None}
        algorithm = header.pop("alg", "RS256")
        token = jwt.encode(claims, key, algorithm=algorithm, headers=header)
        return tweak.raw(token) if tweak is not None and tweak.raw is not None else token


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _app(standin: StandInIssuer) -> Starlette:
    async def gate() -> Response | None:
        if standin.mode == "hang":
            await asyncio.sleep(3600)
        if standin.mode == "down":
            return Response("down", status_code=503)
        return None

    async def discovery(request: Request) -> Response:
        if (failed := await gate()) is not None:
            return failed
        return JSONResponse(
            {
                "issuer": standin.issuer,
                "authorization_endpoint": f"{standin.url}/authorize",
                "token_endpoint": f"{standin.url}/token",
                "jwks_uri": f"{standin.url}/jwks",
                "userinfo_endpoint": f"{standin.url}/userinfo",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }
        )

    async def jwks(request: Request) -> Response:
        standin.jwks_requests += 1
        if (failed := await gate()) is not None:
            return failed
        return JSONResponse({"keys": standin.public_jwks})

    async def authorize(request: Request) -> Response:
        q = request.query_params
        if standin.deny:
            answer = urlencode({"error": standin.deny, "state": q.get("state", "")})
            return RedirectResponse(f"{q['redirect_uri']}?{answer}", status_code=302)
        code = secrets.token_urlsafe(16)
        standin.codes[code] = {
            "nonce": q.get("nonce", ""),
            "challenge": q.get("code_challenge", ""),
            "redirect_uri": q.get("redirect_uri", ""),
        }
        answer = urlencode({"code": code, "state": q.get("state", "")})
        return RedirectResponse(f"{q['redirect_uri']}?{answer}", status_code=302)

    async def token(request: Request) -> Response:
        if (failed := await gate()) is not None:
            return failed
        if standin.fail_token:
            return Response("unavailable", status_code=503)
        form = await request.form()
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = standin.codes.pop(str(form.get("code")), None)
        if (
            grant is None
            or grant["challenge"] != _s256(str(form.get("code_verifier")))
            or grant["redirect_uri"] != form.get("redirect_uri")
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": standin.id_token(grant["nonce"] or None),
            }
        )

    async def userinfo(request: Request) -> Response:
        return JSONResponse({"sub": standin.person.sub, **standin.person.claims()})

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks),
            Route("/authorize", authorize),
            Route("/token", token, methods=["POST"]),
            Route("/userinfo", userinfo),
        ]
    )


@contextmanager
def standin_issuer() -> Iterator[StandInIssuer]:
    """The stand-in on a free loopback port, in a thread, for the duration of the block."""
    port = free_port()
    standin = StandInIssuer(url=f"http://127.0.0.1:{port}")
    standin.rotate("key-1")
    config = uvicorn.Config(
        _app(standin), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the stand-in provider did not start")
        time.sleep(0.01)
    try:
        yield standin
    finally:
        standin.mode = "ok"
        server.should_exit = True
        server.force_exit = True
        thread.join(10)
