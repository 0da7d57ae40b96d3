"""Security headers on every response, and a per-request CSP nonce in ``scope``."""

from __future__ import annotations

import secrets

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP_NONCE_KEY = "bastion.csp_nonce"


def content_security_policy(nonce: str) -> str:
    return (
        "default-src 'self'; "
        f"script-src 'self' 'nonce-{nonce}'; "
        f"style-src 'self' 'nonce-{nonce}'; "
        "img-src 'self' data:; "
        "font-src 'self'; "
        "connect-src 'self'; "
        "object-src 'none'; "
        "base-uri 'none'; "
        "form-action 'self'; "
        "frame-ancestors 'none'"
    )


def security_headers(nonce: str, *, hsts: bool) -> dict[str, str]:
    """The headers every response carries unless the app chose its own value."""
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Content-Security-Policy": content_security_policy(nonce),
        "Cache-Control": "no-store",
    }
    if hsts:
        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    return headers


class SecurityHeadersMiddleware:
    """Adds nosniff, Referrer-Policy, CSP (frame-ancestors 'none', nonce for inline
    script/style), HSTS in production, and ``Cache-Control: no-store`` wherever the app
    did not choose a caching policy itself: a page with a form or a token must never be
    kept by a shared cache, and the safe default is to keep nothing."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope[CSP_NONCE_KEY] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in security_headers(nonce, hsts=self.hsts).items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
