"""CSRF defences as pure functions: session-bound masked tokens and Origin/Referer checks.

The ASGI middleware (``bastion.asgi.csrf``) does the I/O; this module only decides.

Tokens. Each session record holds a CSRF *secret* (:func:`new_csrf_secret`, 32 random bytes).
Pages never show the secret itself but a *token*, ``b64(mask || mask XOR secret)`` with a fresh
mask per response (:func:`mask_token`), so the bytes on the page change every time and
compression side channels (BREACH) cannot recover the secret. Any token made from the session's
secret is accepted, including one reused from an earlier response. **Login must rotate the
secret** (:func:`rotate_csrf_secret`) together with the session id, so that a token planted
or seen before login is worthless after it.

Origins (CONTRACT 4.4). An unsafe request passes only when, in this order:

1. ``Sec-Fetch-Site`` is not ``cross-site`` (browsers set it; pages cannot forge it);
2. ``Origin``, if sent, is the request's own origin or a trusted origin (``null`` never is);
   a same-*site* sibling (``a.example.com`` posting to ``b.example.com``) fails here unless
   trusted;
3. without ``Origin``, the ``Referer`` is such an origin (and not an https->http downgrade);
   with neither header the request is refused: browsers send ``Origin`` on every POST;
4. the token matches the session's secret.

Origins are compared after normalisation: ASCII only (checked before lowercasing, so Unicode
look-alikes such as the Kelvin sign cannot fold into ASCII), lowercase, default port (80 for
http, 443 for https) dropped, IPv6 literals in canonical form. Anything malformed never
matches. Trusted origins are exact ``scheme://host[:port]`` values, without wildcards.

This is a core module: it imports neither FastAPI nor Starlette.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import re
import secrets
from collections.abc import Sequence

from bastion.exceptions import CSRFError

__all__ = [
    "SAFE_METHODS",
    "check_request",
    "is_same_origin",
    "mask_token",
    "new_csrf_secret",
    "normalise_origin",
    "request_origin",
    "rotate_csrf_secret",
    "token_matches",
]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

SECRET_BYTES = 32
SECRET_LENGTH = 43  # base64url characters for 32 bytes, no padding
TOKEN_LENGTH = 86  # base64url characters for 64 bytes (mask || masked secret), no padding

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# host [":" port] where host is a bracketed IPv6 literal or a registered name / IPv4 address.
# Applied only to ASCII input that was lowercased afterwards.
_HOST_PORT = re.compile(
    r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.-]{1,253}))(?::(?P<port>[0-9]{1,5}))?"
)
_ORIGIN = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<authority>[^/?#]*)")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Visible ASCII only: a browser's Referer is a serialised URL, percent-encoded, no spaces.
_URL_CHARS = re.compile(r"[\x21-\x7e]+")


# ---- tokens ---------------------------------------------------------------------------


def new_csrf_secret() -> str:
    """A fresh per-session CSRF secret: 32 random bytes, base64url without padding."""
    return secrets.token_urlsafe(SECRET_BYTES)


def rotate_csrf_secret() -> str:
    """The secret to store at login (and at any privilege change): simply a new one.

    Login must call this; a secret that survives login lets a token planted before it work.
    """
    return new_csrf_secret()


def _b64decode(text: object, length: int) -> bytes | None:
    """Strict base64url without padding of exactly ``length`` characters, else None."""
    if not isinstance(text, str) or len(text) != length or not text.isascii():
        return None
    if not _B64URL.fullmatch(text):
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Refuse non-canonical trailing bits so each token has exactly one spelling.
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != text:
        return None
    return data


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a) ^ int.from_bytes(b)).to_bytes(len(a))


def mask_token(secret: str) -> str:
    """A token for one response: ``b64(mask || mask XOR secret)`` with a fresh random mask.

    Raises ValueError when ``secret`` is not a value made by :func:`new_csrf_secret`.
    """
    raw = _b64decode(secret, SECRET_LENGTH)
    if raw is None:
        raise ValueError("not a CSRF secret")
    mask = secrets.token_bytes(SECRET_BYTES)
    return base64.urlsafe_b64encode(mask + _xor(mask, raw)).rstrip(b"=").decode("ascii")


def token_matches(token: str | None, secret: str | None) -> bool:
    """Whether ``token`` is a masked token of ``secret``. Never raises, whatever the input.

    Only the masked form is accepted: the raw secret is refused, as are wrong lengths,
    padding, non-ASCII and non-base64url characters.
    """
    raw_token = _b64decode(token, TOKEN_LENGTH)
    raw_secret = _b64decode(secret, SECRET_LENGTH)
    if raw_token is None or raw_secret is None:
        return False
    mask, masked = raw_token[:SECRET_BYTES], raw_token[SECRET_BYTES:]
    return hmac.compare_digest(_xor(mask, masked), raw_secret)


# ---- origins --------------------------------------------------------------------------


def _normalise(scheme: str, host: str) -> str | None:
    """``scheme://host[:port]`` in canonical form, or None when anything is malformed."""
    # isascii() before lower(): "\u212a".lower() == "k" would otherwise forge an ASCII host.
    if not scheme.isascii() or not host.isascii():
        return None
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    match = _HOST_PORT.fullmatch(host.lower())
    if match is None:
        return None
    if match["ipv6"] is not None:
        try:
            address = ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            return None
        name = f"[{address.compressed}]"
    else:
        name = match["name"]
    port = match["port"]
    if port is None:
        return f"{scheme}://{name}"
    number = int(port)
    if not 0 < number < 65536:
        return None
    if number == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{name}"
    return f"{scheme}://{name}:{number}"


def request_origin(scheme: str, host: str) -> str:
    """The origin a request was sent to, from its scheme and ``Host`` header (with port).

    Raises ValueError when the scheme is not http(s) or the host is malformed.
    """
    origin = _normalise(scheme, host)
    if origin is None:
        raise ValueError("malformed scheme or host")
    return origin


def normalise_origin(value: str) -> str | None:
    """An ``Origin``-style value (``scheme://host[:port]``, no path) normalised, or None."""
    if not isinstance(value, str) or not value.isascii():
        return None
    match = _ORIGIN.fullmatch(value.lower())
    if match is None:
        return None
    return _normalise(match["scheme"], match["authority"])


def _referer_origin(referer: str) -> str | None:
    """The normalised origin of an absolute http(s) URL, or None when it is anything else.

    User info (``https://example.com@evil.test/``) is refused: browsers strip it from
    Referer, and naive parsers disagree about which side is the host.
    """
    if not _URL_CHARS.fullmatch(referer):
        return None
    match = _ORIGIN.match(referer.lower())
    if match is None:
        return None
    return _normalise(match["scheme"], match["authority"])


def is_same_origin(a: str, b: str) -> bool:
    """Whether two ``scheme://host[:port]`` values name one origin; False if either is bad."""
    first = normalise_origin(a)
    return first is not None and first == normalise_origin(b)


def check_request(
    *,
    method: str,
    secure: bool,
    host: str,
    origin: str | None,
    referer: str | None,
    sec_fetch_site: str | None,
    token: str | None,
    secret: str | None,
    trusted_origins: Sequence[str] = (),
) -> None:
    """Refuse an unsafe, cookie-authenticated request that may be forged; see module doc.

    ``secure`` and ``host`` describe the request as the client sent it (after trusted-proxy
    handling); ``token`` is the form field or ``X-CSRF-Token`` header; ``secret`` comes from
    the session record (None without a session). Raises :class:`CSRFError` with a short
    reason: "cross-site request", "origin null", "origin malformed", "origin mismatch",
    "origin missing", "referer malformed", "referer insecure", "referer mismatch",
    "no session", "token missing" or "token incorrect".
    """
    # Methods are case-sensitive: "get" is not GET, so it gets the full checks.
    if method in SAFE_METHODS:
        return

    if sec_fetch_site is not None and sec_fetch_site.strip().lower() == "cross-site":
        raise CSRFError("cross-site request")
    # "same-site" goes on to the Origin check, which refuses sibling subdomains; "same-origin",
    # "none" and unknown values go on too: the header only ever adds a refusal.

    allowed = {o for o in map(normalise_origin, trusted_origins) if o is not None}
    own = _normalise("https" if secure else "http", host)
    if own is not None:
        allowed.add(own)

    if origin is not None:
        if origin.strip().lower() == "null":
            raise CSRFError("origin null")
        found = normalise_origin(origin)
        if found is None:
            raise CSRFError("origin malformed")
        if found not in allowed:
            raise CSRFError("origin mismatch")
    elif referer:
        found = _referer_origin(referer)
        if found is None:
            raise CSRFError("referer malformed")
        if secure and found.startswith("http://"):
            raise CSRFError("referer insecure")
        if found not in allowed:
            raise CSRFError("referer mismatch")
    else:
        raise CSRFError("origin missing")

    if secret is None:
        raise CSRFError("no session")
    if not token:
        raise CSRFError("token missing")
    if not token_matches(token, secret):
        raise CSRFError("token incorrect")
