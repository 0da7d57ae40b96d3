"""Security headers on every response, and a per-request CSP nonce in ``scope``.

The application may add sources to the CSP under path prefixes of its own (an image CDN
for ``/reports``, an embed): :class:`CSPAdditions`, checked once at start-up. The choice
for a request travels in ``scope[CSP_SOURCES_KEY]``; Bastion's own routes never get one.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.exceptions import ConfigError

CSP_NONCE_KEY = "bastion.csp_nonce"
# The sources this request's CSP adds to Bastion's ({directive: sources}), if any.
CSP_SOURCES_KEY = "bastion.csp_sources"
NONCE = "'nonce-{nonce}'"
POLICY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("default-src", ("'self'",)),
    ("script-src", ("'self'", NONCE)),
    ("style-src", ("'self'", NONCE)),
    ("img-src", ("'self'", "data:")),
    ("font-src", ("'self'",)),
    ("connect-src", ("'self'",)),
    ("object-src", ("'none'",)),
    ("base-uri", ("'none'",)),
    ("form-action", ("'self'",)),
    ("frame-ancestors", ("'none'",)),
)
# What an application may add to; a directive missing from POLICY starts from default-src.
ADDABLE = frozenset(
    {
        "script-src",
        "style-src",
        "img-src",
        "font-src",
        "connect-src",
        "media-src",
        "frame-src",
        "worker-src",
        "manifest-src",
        "form-action",
    }
)
# Never relaxed: framing (clickjacking), <base> (every relative URL) and plugins.
NEVER_RELAXED = frozenset({"frame-ancestors", "base-uri", "object-src"})
# Directives whose extra sources run code on the page: a bare scheme (https:) there would
# let any site's script in, so they take hosts and hashes only.
RUNS_CODE = frozenset({"script-src", "worker-src"})
HASHABLE = frozenset({"script-src", "style-src"})

_LABEL = r"[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?"
_HOST_SOURCE = re.compile(
    rf"(?:(?:https?|wss?)://)?(?:\*\.)?{_LABEL}(?:\.{_LABEL})*(?::(?:[0-9]{{1,5}}|\*))?"
    r"(?:/[a-z0-9\-._~!$&()*+=:@%/]*)?",
    re.IGNORECASE,
)
_SCHEME_SOURCE = re.compile(r"(?:https?|wss?|data|blob|mediastream):", re.IGNORECASE)
_HASH_SOURCE = re.compile(r"'sha(?:256|384|512)-[A-Za-z0-9+/]+={0,2}'")
_PREFIX = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*")


def content_security_policy(
    nonce: str, sources: Mapping[str, tuple[str, ...]] | None = None
) -> str:
    """Bastion's policy, with ``sources`` (already checked by :class:`CSPAdditions`) added
    to their directives."""
    parts = _policy_parts(sources) if sources else _DEFAULT_PARTS
    return NONCE.format(nonce=nonce).join(parts)


def _policy_parts(sources: Mapping[str, tuple[str, ...]] | None) -> list[str]:
    """The policy as the text around its nonce sources (the nonce is new per response)."""
    directives = {name: values for name, values in POLICY}
    for name, extra in (sources or {}).items():
        base = directives.get(name, directives["default-src"])
        directives[name] = tuple(dict.fromkeys(base + extra))
    policy = "; ".join(" ".join([name, *values]) for name, values in directives.items())
    return policy.split(NONCE)


# Bastion's own policy, the one nearly every response gets: split once, not per response.
_DEFAULT_PARTS = _policy_parts(None)


class CSPAdditions:
    """Sources the application adds to the CSP of the paths under some prefixes, e.g.
    ``{"/reports": {"img-src": ["https://charts.example"]}}``: each prefix covers itself
    and the paths below it (``/reports/2024``, not ``/reportsX``); the additions of every
    prefix that covers a path apply. Refused with :class:`ConfigError`: directives that
    are never relaxed (``frame-ancestors``, ``base-uri``, ``object-src``) or not meant to
    be (``default-src``, ``sandbox``, ...), keyword sources (``'unsafe-inline'``, ...),
    the bare wildcard ``*``, and anything that could end a directive or a source
    (``;``, ``,``, quotes, spaces); ``script-src`` and ``worker-src`` take hosts and
    hashes only, never a bare scheme such as ``https:``."""

    def __init__(self, by_prefix: Mapping[str, Mapping[str, Sequence[str]]] | None = None) -> None:
        self._by_prefix: list[tuple[str, dict[str, tuple[str, ...]]]] = []
        for prefix, directives in (by_prefix or {}).items():
            self._by_prefix.append((_checked_prefix(prefix), _checked_directives(directives)))

    def __bool__(self) -> bool:
        return bool(self._by_prefix)

    def for_path(self, path: str) -> dict[str, tuple[str, ...]] | None:
        found: dict[str, tuple[str, ...]] = {}
        for prefix, directives in self._by_prefix:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                for name, sources in directives.items():
                    found[name] = found.get(name, ()) + sources
        return found or None


def _checked_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ConfigError(f"CSP additions: {prefix!r} is not a path prefix such as '/reports'")
    return prefix.rstrip("/") or "/"


def _checked_directives(directives: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    if not isinstance(directives, Mapping):
        raise ConfigError("CSP additions: each prefix takes {directive: [sources]}")
    checked: dict[str, tuple[str, ...]] = {}
    for name, sources in directives.items():
        if name in NEVER_RELAXED:
            raise ConfigError(f"CSP additions: {name} is never relaxed")
        if name not in ADDABLE:
            raise ConfigError(
                f"CSP additions: {name!r} cannot be added to; use one of {sorted(ADDABLE)}"
            )
        if isinstance(sources, str):  # one source given bare: a string is a sequence too
            raise ConfigError(f"CSP additions: the {name} sources must be a list of strings")
        checked[name] = tuple(_checked_source(name, source) for source in sources)
    return checked


def _checked_source(directive: str, source: object) -> str:
    if not isinstance(source, str):
        raise ConfigError(f"CSP additions: {directive} sources must be strings")
    if _HASH_SOURCE.fullmatch(source):
        if directive not in HASHABLE:
            raise ConfigError("CSP additions: hashes apply to script-src and style-src only")
        return source
    if _SCHEME_SOURCE.fullmatch(source):
        if directive in RUNS_CODE:
            raise ConfigError(
                f"CSP additions: {directive} takes hosts or hashes, not a whole scheme ({source})"
            )
        return source
    if _HOST_SOURCE.fullmatch(source):
        return source
    raise ConfigError(
        f"CSP additions: {source!r} in {directive} is not a host (https://cdn.example), "
        "scheme (https:, wss:, data:, blob:) or hash ('sha256-...') source; keywords and * "
        "are refused"
    )


def security_headers(
    nonce: str, *, hsts: bool, csp_sources: Mapping[str, tuple[str, ...]] | None = None
) -> dict[str, str]:
    """The headers every response carries unless the app chose its own value."""
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Content-Security-Policy": content_security_policy(nonce, csp_sources),
        "Cache-Control": "no-store",
    }
    if hsts:
        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    return headers


class SecurityHeadersMiddleware:
    """Adds nosniff, Referrer-Policy, CSP (frame-ancestors 'none', nonce for inline
    script/style), HSTS in production, and ``Cache-Control: no-store`` wherever the app
    did not choose a caching policy itself: a page with a form or a token must never be
    kept by a shared cache, and the safe default is to keep nothing.

    ``csp_additions`` apply on their prefixes, except to requests ``keeps_own_csp`` claims
    (Bastion's own routes)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hsts: bool = False,
        csp_additions: CSPAdditions | None = None,
        keeps_own_csp: Callable[[Scope], bool] = lambda scope: False,
    ) -> None:
        self.app = app
        self.hsts = hsts
        self.csp_additions = csp_additions or CSPAdditions()
        self.keeps_own_csp = keeps_own_csp
        # security_headers() as raw ASGI pairs, in its order; None marks the policy, which
        # carries the response's nonce.
        self._encoded: list[tuple[bytes, bytes | None]] = [
            (
                name.lower().encode("latin-1"),
                None if name == "Content-Security-Policy" else value.encode("latin-1"),
            )
            for name, value in security_headers("", hsts=hsts).items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope[CSP_NONCE_KEY] = nonce
        if self.csp_additions:
            sources = self.csp_additions.for_path(scope["path"])
            if sources is not None and not self.keeps_own_csp(scope):
                scope[CSP_SOURCES_KEY] = sources

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # MutableHeaders.setdefault for each of security_headers(), in one pass
                # over the response's headers instead of one per header.
                raw = message["headers"] = list(message.get("headers", ()))
                present = {name for name, _ in raw}
                for name, value in self._encoded:
                    if name in present:
                        continue
                    if value is None:
                        policy = content_security_policy(nonce, scope.get(CSP_SOURCES_KEY))
                        value = policy.encode("latin-1")
                    raw.append((name, value))
            await send(message)

        await self.app(scope, receive, send_with_headers)
