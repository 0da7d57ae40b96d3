"""A stand-in for GitHub's OAuth app endpoints on a loopback port, for the tests of a
provider of kind ``github``.

It answers like github.com and api.github.com:

- ``GET /login/oauth/authorize``: approves at once for the user the test chose
  (``sign_in_as``) and redirects to the ``redirect_uri`` with ``code`` and ``state``;
- ``POST /login/oauth/access_token``: the code for an access token, as JSON when asked by
  ``Accept: application/json``, else form-encoded; a wrong code, client, secret, redirect
  URI or PKCE verifier is answered, as GitHub does, with status 200 and ``error``;
- ``GET /user`` and ``GET /user/emails`` with ``Authorization: Bearer|token <token>``
  (also under ``/api/v3``, where GitHub Enterprise Server has its API).

Codes are single-use. ``requests`` records the paths asked, for tests that check what was
called.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class GitHubUser:
    login: str
    id: int
    name: str | None = None
    # (address, verified, primary)
    emails: list[tuple[str, bool, bool]] = field(default_factory=list)

    def user_json(self) -> dict[str, Any]:
        public = next((address for address, _, primary in self.emails if primary), None)
        return {"login": self.login, "id": self.id, "name": self.name, "email": public}

    def emails_json(self) -> list[dict[str, Any]]:
        return [
            {"email": address, "verified": verified, "primary": primary, "visibility": None}
            for address, verified, primary in self.emails
        ]


@dataclass
class Grant:
    user: GitHubUser
    client_id: str
    redirect_uri: str | None
    code_challenge: str | None


class GitHubStandIn:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.users: dict[str, GitHubUser] = {}
        self.sign_in_as: str | None = None
        self.requests: list[str] = []
        self._codes: dict[str, Grant] = {}
        self._tokens: dict[str, GitHubUser] = {}
        self._lock = threading.Lock()
        self.url = ""

    def add_user(
        self, login: str, *, emails: list[tuple[str, bool, bool]], name: str | None = None
    ) -> GitHubUser:
        user = GitHubUser(login, 1000 + len(self.users), name, emails)
        self.users[login] = user
        self.sign_in_as = self.sign_in_as or login
        return user

    # The endpoints; each returns (status, headers, body).

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        redirect_uri = query.get("redirect_uri")
        if query.get("client_id") != self.client_id or not redirect_uri or not self.sign_in_as:
            return 404, {"Content-Type": "text/plain"}, b"unknown application"
        code = secrets.token_hex(10)
        with self._lock:
            self._codes[code] = Grant(
                self.users[self.sign_in_as],
                self.client_id,
                redirect_uri,
                query.get("code_challenge") if query.get("code_challenge_method") else None,
            )
        answer = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        separator = "&" if "?" in redirect_uri else "?"
        return 302, {"Location": f"{redirect_uri}{separator}{urlencode(answer)}"}, b""

    def access_token(
        self, form: dict[str, str], authorization: str | None
    ) -> tuple[str, dict[str, str]]:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = decoded.partition(":")
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)
        if client_id != self.client_id or secret != self.client_secret:
            return "incorrect_client_credentials", {}
        if grant is None or grant.client_id != client_id:
            return "bad_verification_code", {}
        if form.get("redirect_uri") and form["redirect_uri"] != grant.redirect_uri:
            return "redirect_uri_mismatch", {}
        if grant.code_challenge is not None:
            verifier = form.get("code_verifier", "").encode()
            digest = hashlib.sha256(verifier).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.code_challenge:
                return "bad_verification_code", {}
        token = f"gho_{secrets.token_hex(18)}"
        with self._lock:
            self._tokens[token] = grant.user
        return "", {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}

    def user_for(self, authorization: str | None) -> GitHubUser | None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() not in {"bearer", "token"}:
            return None
        with self._lock:
            return self._tokens.get(token.strip())


def handler_for(standin: GitHubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # the tests' output stays readable; `requests` keeps the paths

        def send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status: int, value: Any) -> None:
            self.send(status, {"Content-Type": "application/json"}, json.dumps(value).encode())

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path.removeprefix("/api/v3")
            standin.requests.append(f"GET {parts.path}")
            if path == "/login/oauth/authorize":
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                self.send(*standin.authorize(query))
                return
            user = standin.user_for(self.headers.get("Authorization"))
            if path in {"/user", "/user/emails"} and user is None:
                self.send_json(401, {"message": "Requires authentication"})
            elif path == "/user" and user is not None:
                self.send_json(200, user.user_json())
            elif path == "/user/emails" and user is not None:
                self.send_json(200, user.emails_json())
            else:
                self.send_json(404, {"message": "Not Found"})

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            standin.requests.append(f"POST {parts.path}")
            if parts.path != "/login/oauth/access_token":
                self.send_json(404, {"message": "Not Found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = parse_qs(self.rfile.read(length).decode())
            form = {key: values[0] for key, values in raw.items()}
            error, token = standin.access_token(form, self.headers.get("Authorization"))
            answer = {"error": error} if error else token
            if "application/json" in (self.headers.get("Accept") or ""):
                self.send_json(200, answer)
            else:
                body = urlencode(answer).encode()
                self.send(200, {"Content-Type": "application/x-www-form-urlencoded"}, body)

    return Handler


@contextmanager
def github_standin(client_id: str, client_secret: str) -> Iterator[GitHubStandIn]:
    """The stand-in, serving on a free loopback port (``.url``) until the block ends."""
    standin = GitHubStandIn(client_id, client_secret)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(standin))
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
