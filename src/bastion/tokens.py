"""Access tokens: short-lived JWTs in the RFC 9068 profile, signed with the key file's signing key.

Before the signature is checked, the token's header is used only to pick a key by ``kid``, and
the algorithm is never taken from the token: it is the algorithm of that key (RFC 8725 2.1).
Every failure is a :class:`~bastion.exceptions.TokenError` whose ``reason`` is meant for
logs; responses should say no more than "invalid token".

Refresh tokens are opaque and live elsewhere; this module only signs and checks access JWTs.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import jwt
from jwt import exceptions as jwt_errors

from bastion.clock import Clock, system_clock
from bastion.exceptions import ConfigError, TokenError
from bastion.keys import Key, KeySource

__all__ = ["ACCESS_JWT_TYP", "MAX_TOKEN_LENGTH", "AccessClaims", "AccessTokenCodec"]

log = logging.getLogger("bastion.tokens")

ACCESS_JWT_TYP: Final = "at+jwt"
# RFC 9068 2.1: "at+jwt"; media types compare case-insensitively, with or without "application/".
_ACCEPTED_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})
# Our tokens carry exactly these header members. Anything else is refused, and these are named
# in the reason because they ask the verifier to fetch or trust a key from the token itself.
_ALLOWED_HEADER: Final = frozenset({"alg", "kid", "typ"})
_DANGEROUS_HEADER: Final = ("jku", "jwk", "x5u", "x5c", "crit")
_REGISTERED_CLAIMS: Final = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid"})
_REQUIRED_CLAIMS: Final = ["exp", "iat", "sub", "sid", "jti", "iss", "aud"]
# Far above any token we issue (~1 KiB with RS256), far below anything that costs real work.
MAX_TOKEN_LENGTH: Final = 8192
# Tokens whose signature was verified, newest last; a client reuses its token for minutes.
VERIFIED_CACHE_SIZE: Final = 4096
MAX_LEEWAY: Final = 60
# One compact-form part: base64url alphabet only, so no padding, whitespace or non-ASCII.
_PART: Final = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified claims of an access token. ``extra`` holds any non-registered claims."""

    sub: str
    sid: str
    iat: int
    exp: int
    jti: str
    iss: str
    aud: str
    nbf: int | None = None
    extra: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, repr=False
    )


class AccessTokenCodec:
    """Signs and verifies access tokens with the keys of a :class:`~bastion.keys.KeySource`."""

    def __init__(
        self,
        keyring: KeySource,
        *,
        issuer: str,
        audience: str,
        ttl: int,
        leeway: int = 30,
        clock: Clock = system_clock,
    ) -> None:
        if not issuer or not audience:
            raise ConfigError("JWT issuer and audience must not be empty")
        if ttl <= 0:
            raise ConfigError("access-token lifetime must be positive")
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ConfigError(f"JWT leeway must be between 0 and {MAX_LEEWAY} seconds")
        self._keys = keyring
        self.issuer = issuer
        self.audience = audience
        self.ttl = int(ttl)
        self.leeway = int(leeway)
        self._clock = clock
        self._verified: OrderedDict[str, tuple[dict[str, Any], str, AccessClaims]] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"AccessTokenCodec(issuer={self.issuer!r}, audience={self.audience!r}, "
            f"ttl={self.ttl}, leeway={self.leeway})"
        )

    def encode(
        self, sub: str, sid: str, extra: Mapping[str, Any] | None = None
    ) -> tuple[str, AccessClaims]:
        """A signed token for user ``sub`` in session ``sid``, and the claims it carries."""
        if not isinstance(sub, str) or not sub or not isinstance(sid, str) or not sid:
            raise ValueError("sub and sid must be non-empty strings")
        extra_claims = dict(extra or {})
        clash = _REGISTERED_CLAIMS.intersection(extra_claims)
        if clash:
            raise ValueError(f"extra claims may not set registered claims: {sorted(clash)}")
        key = self._keys.current().signing_key
        iat = int(self._clock())
        claims = AccessClaims(
            sub=sub,
            sid=sid,
            iat=iat,
            exp=iat + self.ttl,
            jti=secrets.token_urlsafe(16),  # 128 random bits
            iss=self.issuer,
            aud=self.audience,
            extra=MappingProxyType(extra_claims),
        )
        payload = {
            **extra_claims,
            "iss": claims.iss,
            "sub": claims.sub,
            "aud": claims.aud,
            "sid": claims.sid,
            "iat": claims.iat,
            "exp": claims.exp,
            "jti": claims.jti,
        }
        headers = {"kid": key.kid, "typ": ACCESS_JWT_TYP}
        token = jwt.encode(payload, key.signing_key, algorithm=key.alg, headers=headers)
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError("token too long for decode(); send fewer extra claims")
        return token, claims

    def decode(self, token: object) -> AccessClaims:
        """Verify ``token`` and return its claims, or raise :class:`TokenError` (and only that)."""
        try:
            return self._decode(token)
        except TokenError:
            raise
        except jwt_errors.InvalidSignatureError:
            raise TokenError("invalid signature") from None
        except jwt_errors.InvalidIssuerError:
            raise TokenError("wrong issuer") from None
        except jwt_errors.InvalidAudienceError:
            raise TokenError("wrong audience") from None
        except jwt_errors.InvalidSubjectError:
            raise TokenError("invalid claim: sub") from None
        except jwt_errors.InvalidJTIError:
            raise TokenError("invalid claim: jti") from None
        except jwt_errors.MissingRequiredClaimError as exc:
            raise TokenError(f"missing claim: {exc.claim}") from None
        except jwt_errors.PyJWTError:
            raise TokenError("invalid token") from None
        except Exception:
            # A malformed token must end as a 401, never a 500, whatever the parser tripped on;
            # the traceback is logged (without the token) so a bug here still gets seen.
            log.exception("unexpected error while checking an access token")
            raise TokenError("invalid token") from None

    def _decode(self, token: object) -> AccessClaims:
        if not isinstance(token, str):
            raise TokenError("malformed token")
        # The key checks run every time (so a pruned key refuses its tokens at once); the
        # header parse, the signature and the iss/aud checks are deterministic for these
        # exact bytes, so a token seen before skips them. Times are always checked again.
        cached = self._verified.get(token)
        if cached is not None:
            header, kid, claims = cached
            if self._key_for(header).kid == kid:
                self._verified.move_to_end(token)
                self._check_times(claims)
                return claims
        header = _strict_header(token)
        key = self._key_for(header)
        payload = jwt.decode(
            token,
            key.verification_key,
            algorithms=[key.alg],
            audience=self.audience,
            issuer=self.issuer,
            options={
                "require": _REQUIRED_CLAIMS,
                "strict_aud": True,
                "enforce_minimum_key_length": True,
                # PyJWT reads the real time; these three are checked below with our clock.
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
        claims = _claims(payload)
        self._check_times(claims)
        self._verified[token] = (header, key.kid, claims)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def _key_for(self, header: dict[str, Any]) -> Key:
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or not kid:
            raise TokenError("missing kid")
        # An unknown kid may be a key another process just rotated in: look at the file now.
        key = self._keys.current().get(kid) or self._keys.refresh().get(kid)
        if key is None:
            raise TokenError("unknown key")
        # The allow-list is the one algorithm of that key: this refuses "none" in any case,
        # HS256 over a public key, and RS/ES/EdDSA swaps, before any crypto runs.
        if not isinstance(alg, str) or alg != key.alg:
            raise TokenError("algorithm not allowed")
        return key

    def _check_times(self, claims: AccessClaims) -> None:
        now = self._clock()
        if claims.exp <= now - self.leeway:
            raise TokenError("token expired")
        if claims.iat > now + self.leeway:
            raise TokenError("token issued in the future")
        if claims.nbf is not None and claims.nbf > now + self.leeway:
            raise TokenError("token not yet valid")
        if claims.exp <= claims.iat:
            raise TokenError("invalid claim: exp")


def _claims(payload: dict[str, Any]) -> AccessClaims:
    """The claims of a payload whose signature, issuer and audience were verified."""
    exp = _int_claim(payload, "exp")
    iat = _int_claim(payload, "iat")
    nbf = _int_claim(payload, "nbf") if "nbf" in payload else None
    sub, sid, jti = (_str_claim(payload, name) for name in ("sub", "sid", "jti"))
    extra = {k: v for k, v in payload.items() if k not in _REGISTERED_CLAIMS}
    return AccessClaims(
        sub=sub,
        sid=sid,
        iat=iat,
        exp=exp,
        jti=jti,
        iss=payload["iss"],
        aud=payload["aud"],
        nbf=nbf,
        extra=MappingProxyType(extra),
    )


def _strict_header(token: str) -> dict[str, Any]:
    """Check the compact form and the header before any key or crypto is involved."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("token too long")
    parts = token.split(".")
    # len % 4 == 1 can never be base64; PyJWT also refuses non-canonical trailing bits.
    if len(parts) != 3 or not all(_PART.fullmatch(p) and len(p) % 4 != 1 for p in parts):
        raise TokenError("malformed token")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (binascii.Error, ValueError, RecursionError):
        raise TokenError("malformed header") from None
    if not isinstance(header, dict):
        raise TokenError("malformed header")
    for name in _DANGEROUS_HEADER:
        if name in header:
            raise TokenError(f"forbidden header parameter: {name}")
    if not _ALLOWED_HEADER.issuperset(header):
        raise TokenError("unexpected header parameter")
    typ = header.get("typ")
    if not isinstance(typ, str) or not typ.isascii() or typ.lower() not in _ACCEPTED_TYPES:
        raise TokenError("wrong token type")
    return header


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 7515 4: a header with duplicate names may be rejected; parsers disagree on which wins.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate header member")
    return result


def _int_claim(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    # We issue whole seconds; floats, bools and strings here mean someone else made the token.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenError(f"invalid claim: {name}")
    return value


def _str_claim(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise TokenError(f"invalid claim: {name}")
    return value
