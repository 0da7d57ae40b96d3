"""Access JWTs: what they carry, and that every forged or broken token is a TokenError."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import get_default_algorithms

from bastion import keys
from bastion.clock import FakeClock
from bastion.exceptions import ConfigError, TokenError
from bastion.keys import Key, KeyRing, KeySet
from bastion.tokens import MAX_TOKEN_LENGTH, AccessClaims, AccessTokenCodec

NOW = 1_700_000_000
ISSUER, AUDIENCE, TTL, LEEWAY = "bastion", "bastion-api", 600, 30
ALGORITHMS = ("HS256", "EdDSA", "ES256", "RS256")


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One key file per algorithm, made once per module (RS256 generation is slow-ish)."""
    folder = tmp_path_factory.mktemp("keys")
    files = {alg: folder / f"{alg}.json" for alg in ALGORITHMS}
    for alg, path in files.items():
        keys.load_or_create(path, alg, FakeClock(NOW))
    return files


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def codec_for(source: keys.KeySource, clock: FakeClock) -> AccessTokenCodec:
    return AccessTokenCodec(
        source, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, leeway=LEEWAY, clock=clock
    )


# --- forging helpers ----------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def sign(key: Key, signing_input: bytes) -> bytes:
    """A real signature by ``key`` with its own algorithm."""
    algorithm = get_default_algorithms()[key.alg]
    return algorithm.sign(signing_input, algorithm.prepare_key(key.signing_key))


def hmac_with(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda signing_input: hmac.new(secret, signing_input, hashlib.sha256).digest()


def assemble(header: str, payload: str, signer: Callable[[bytes], bytes] | bytes) -> str:
    signing_input = f"{header}.{payload}".encode()
    signature = signer if isinstance(signer, bytes) else signer(signing_input)
    return f"{header}.{payload}.{b64(signature)}"


@dataclass
class Forge:
    """Builds tokens against the key set of ``alg``; by default valid and signed."""

    key: Key
    other: dict[str, Key]  # a signing key of every algorithm, from the module's files

    def header(self, **changes: Any) -> dict[str, Any]:
        header = {"alg": self.key.alg, "kid": self.key.kid, "typ": "at+jwt"}
        header.update(changes)
        return {k: v for k, v in header.items() if v is not None}

    def claims(self, **changes: Any) -> dict[str, Any]:
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "sid": "session-1",
            "iat": NOW,
            "exp": NOW + TTL,
            "jti": "jti-1",
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        header: dict[str, Any] | None = None,
        claims: Any = None,
        signer: Callable[[bytes], bytes] | bytes | None = None,
    ) -> str:
        return assemble(
            b64json(self.header() if header is None else header),
            b64json(self.claims() if claims is None else claims),
            (lambda data: sign(self.key, data)) if signer is None else signer,
        )


@pytest.fixture(scope="module")
def signing_keys(key_files: dict[str, Path]) -> dict[str, Key]:
    return {alg: keys.load(path).signing_key for alg, path in key_files.items()}


def forge_for(alg: str, signing_keys: dict[str, Key]) -> Forge:
    return Forge(signing_keys[alg], signing_keys)


def public_pem(key: Key) -> bytes:
    public = key.verification_key
    assert not isinstance(public, bytes)
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_jwk_bytes(key: Key) -> bytes:
    return json.dumps(key.public_jwk()).encode()


def with_signature(token: str, change: Callable[[bytes], bytes]) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{payload}.{b64(change(unb64(signature)))}"


def flip_first_byte(signature: bytes) -> bytes:
    return bytes([signature[0] ^ 0x01]) + signature[1:]


def same_kid_other_key(f: Forge) -> str:
    impostor = keys.generate_key(f.key.alg, NOW, kid=f.key.kid)
    return f.token(signer=lambda data: sign(impostor, data))


# --- every broken token is refused --------------------------------------------------------

Case = Callable[[Forge], Any]


def case(alg: str, build: Case, reason: str, name: str) -> Any:
    return pytest.param(alg, build, reason, id=name)


def with_alg_none(alg: str, signature: bytes) -> Case:
    return lambda f: f.token(f.header(alg=alg), signer=signature)


def hs256_over_public_key(form: str) -> Case:
    """HMAC keyed with the verifier's public key: the classic algorithm-confusion forgery."""

    def build(f: Forge) -> str:
        secret = public_pem(f.key) if form == "pem" else public_jwk_bytes(f.key)
        return f.token(f.header(alg="HS256"), signer=hmac_with(secret))

    return build


def signed_by_other_algorithm(alg: str) -> Case:
    return lambda f: f.token(f.header(alg=alg), signer=lambda data: sign(f.other[alg], data))


def without_claim(name: str) -> Case:
    return lambda f: f.token(claims={k: v for k, v in f.claims().items() if k != name})


NONE_CASES = [
    case(
        "EdDSA",
        with_alg_none(alg, sig),
        "malformed token" if not sig else "algorithm not allowed",
        f"alg-{alg}-{'empty' if not sig else 'nonempty'}-signature",
    )
    for alg in ("none", "None", "NONE", "nOnE")
    for sig in (b"", b"sig")
]

CONFUSION_CASES = [
    case(
        alg,
        hs256_over_public_key(form),
        "algorithm not allowed",
        f"hs256-signed-with-{alg}-public-key-{form}",
    )
    for alg in ("RS256", "EdDSA", "ES256")
    for form in ("pem", "jwk")
]

SWAP_CASES = [
    case(
        target,
        signed_by_other_algorithm(signer),
        "algorithm not allowed",
        f"{target}-key-with-{signer}-token",
    )
    for target, signer in [
        ("RS256", "ES256"),
        ("ES256", "RS256"),
        ("EdDSA", "ES256"),
        ("ES256", "EdDSA"),
        ("HS256", "RS256"),
    ]
]

HEADER_CASES = [
    case("HS256", lambda f: f.token(f.header(kid="no-such-kid")), "unknown key", "unknown-kid"),
    case("HS256", lambda f: f.token(f.header(kid=None)), "missing kid", "missing-kid"),
    case("HS256", lambda f: f.token(f.header(kid="")), "missing kid", "empty-kid"),
    case("HS256", lambda f: f.token(f.header(kid=7)), "missing kid", "kid-not-a-string"),
    case("HS256", lambda f: f.token(f.header(alg=None)), "algorithm not allowed", "missing-alg"),
    case("HS256", lambda f: f.token(f.header(alg="HS512")), "algorithm not allowed", "hs512"),
    case("HS256", lambda f: f.token(f.header(alg="hs256")), "algorithm not allowed", "alg-case"),
    case(
        "EdDSA",
        lambda f: f.token(f.header(jku="https://evil.example/jwks.json")),
        "forbidden header parameter: jku",
        "jku-header",
    ),
    case(
        "EdDSA",
        lambda f: f.token(f.header(jwk=f.other["EdDSA"].public_jwk())),
        "forbidden header parameter: jwk",
        "jwk-header",
    ),
    case(
        "RS256",
        lambda f: f.token(f.header(x5u="https://evil.example/cert.pem")),
        "forbidden header parameter: x5u",
        "x5u-header",
    ),
    case(
        "RS256",
        lambda f: f.token(f.header(x5c=["MIIB"])),
        "forbidden header parameter: x5c",
        "x5c-header",
    ),
    case(
        "HS256",
        lambda f: f.token(f.header(crit=["exp"])),
        "forbidden header parameter: crit",
        "crit",
    ),
    case(
        "HS256",
        lambda f: f.token(f.header(b64=False)),
        "unexpected header parameter",
        "b64-header",
    ),
    case("HS256", lambda f: f.token(f.header(cty="JWT")), "unexpected header parameter", "cty"),
    case("HS256", lambda f: f.token(f.header(typ="JWT")), "wrong token type", "typ-JWT"),
    case("HS256", lambda f: f.token(f.header(typ=None)), "wrong token type", "typ-missing"),
    case("HS256", lambda f: f.token(f.header(typ="at+jwt ")), "wrong token type", "typ-space"),
    case("HS256", lambda f: f.token(f.header(typ=["at+jwt"])), "wrong token type", "typ-list"),
    case(
        "HS256",
        lambda f: assemble(
            b64(b'{"alg":"none","alg":"HS256","kid":"%s","typ":"at+jwt"}' % f.key.kid.encode()),
            b64json(f.claims()),
            lambda data: sign(f.key, data),
        ),
        "malformed header",
        "duplicate-alg-member",
    ),
    case(
        "HS256",
        lambda f: assemble(b64(b"not json"), b64json(f.claims()), lambda d: sign(f.key, d)),
        "malformed header",
        "header-not-json",
    ),
    case(
        "HS256",
        lambda f: assemble(b64json(["at+jwt"]), b64json(f.claims()), lambda d: sign(f.key, d)),
        "malformed header",
        "header-json-list",
    ),
    case(
        "HS256",
        lambda f: assemble(b64(b"\xff\xfe{}"), b64json(f.claims()), lambda d: sign(f.key, d)),
        "malformed header",
        "header-not-utf8",
    ),
]

CLAIM_CASES = [
    case(
        "HS256",
        lambda f: f.token(claims=f.claims(iat=NOW - TTL - 100, exp=NOW - 100)),
        "token expired",
        "expired",
    ),
    case(
        "EdDSA",
        lambda f: f.token(claims=f.claims(exp=NOW - LEEWAY)),
        "token expired",
        "expired-exactly-at-leeway",
    ),
    case(
        "HS256",
        lambda f: f.token(claims=f.claims(nbf=NOW + 120)),
        "token not yet valid",
        "nbf-future",
    ),
    case(
        "HS256",
        lambda f: f.token(claims=f.claims(iat=NOW + LEEWAY + 1, exp=NOW + TTL + 100)),
        "token issued in the future",
        "iat-future-beyond-leeway",
    ),
    case(
        "HS256",
        lambda f: f.token(claims=f.claims(exp=NOW - 10, iat=NOW)),
        "invalid claim: exp",
        "exp-before-iat",
    ),
    case("ES256", lambda f: f.token(claims=f.claims(iss="evil")), "wrong issuer", "wrong-iss"),
    case("ES256", lambda f: f.token(claims=f.claims(iss=7)), "wrong issuer", "iss-not-a-string"),
    case(
        "ES256", lambda f: f.token(claims=f.claims(aud="other-api")), "wrong audience", "wrong-aud"
    ),
    case(
        "ES256",
        lambda f: f.token(claims=f.claims(aud=[AUDIENCE, "x"])),
        "wrong audience",
        "aud-list",
    ),
    *[
        case(
            "HS256",
            without_claim(name),
            f"missing claim: {name}",
            f"missing-{name}",
        )
        for name in ("exp", "iat", "sid", "sub", "jti", "iss", "aud")
    ],
    case("HS256", lambda f: f.token(claims=f.claims(sid=42)), "invalid claim: sid", "sid-int"),
    case("HS256", lambda f: f.token(claims=f.claims(sid="")), "invalid claim: sid", "sid-empty"),
    case("HS256", lambda f: f.token(claims=f.claims(sid=["s"])), "invalid claim: sid", "sid-list"),
    case("HS256", lambda f: f.token(claims=f.claims(sub=42)), "invalid claim: sub", "sub-int"),
    case("HS256", lambda f: f.token(claims=f.claims(sub="")), "invalid claim: sub", "sub-empty"),
    case("HS256", lambda f: f.token(claims=f.claims(jti=1)), "invalid claim: jti", "jti-int"),
    case("HS256", lambda f: f.token(claims=f.claims(exp="never")), "invalid claim: exp", "exp-str"),
    case(
        "HS256",
        lambda f: f.token(claims=f.claims(exp=NOW + 0.5)),
        "invalid claim: exp",
        "exp-float",
    ),
    case("HS256", lambda f: f.token(claims=f.claims(iat=True)), "invalid claim: iat", "iat-bool"),
    case("HS256", lambda f: f.token(claims=f.claims(nbf="soon")), "invalid claim: nbf", "nbf-str"),
    case("HS256", lambda f: f.token(claims=[f.claims()]), "invalid token", "payload-json-list"),
    case("HS256", lambda f: f.token(claims="a string"), "invalid token", "payload-json-string"),
]


def _good(f: Forge) -> str:
    return f.token()


FORM_CASES = [
    case("HS256", same_kid_other_key, "invalid signature", "hs256-other-key-set-same-kid"),
    case("EdDSA", same_kid_other_key, "invalid signature", "eddsa-other-key-set-same-kid"),
    case("RS256", same_kid_other_key, "invalid signature", "rs256-other-key-set-same-kid"),
    case("HS256", lambda f: _good(f) + "=", "malformed token", "padding-on-signature"),
    case(
        "HS256",
        lambda f: "{}=.{}".format(*_good(f).split(".", 1)),
        "malformed token",
        "padding-on-header",
    ),
    case("HS256", lambda f: _good(f).rsplit(".", 1)[0], "malformed token", "two-parts"),
    case("HS256", lambda f: _good(f) + ".e30", "malformed token", "four-parts"),
    case("HS256", lambda f: "", "malformed token", "empty-string"),
    case("HS256", lambda f: "..", "malformed token", "three-empty-parts"),
    case("HS256", lambda f: _good(f).rsplit(".", 1)[0] + ".", "malformed token", "empty-signature"),
    case("HS256", lambda f: " " + _good(f), "malformed token", "leading-space"),
    case("HS256", lambda f: _good(f) + "\n", "malformed token", "trailing-newline"),
    case("HS256", lambda f: _good(f).replace(".", ". ", 1), "malformed token", "inner-space"),
    case("HS256", lambda f: "é" + _good(f)[1:], "malformed token", "non-ascii"),
    case("HS256", lambda f: "\uff21" + _good(f)[1:], "malformed token", "fullwidth-letter"),
    case(
        "HS256",
        lambda f: _good(f).replace("-", "+").replace("_", "/") + "+/",
        "malformed token",
        "standard-base64",
    ),
    case("HS256", lambda f: "a" * (MAX_TOKEN_LENGTH + 1), "token too long", "huge-token"),
    case(
        "HS256",
        lambda f: f.token(claims=f.claims(pad="x" * MAX_TOKEN_LENGTH)),
        "token too long",
        "huge-but-signed",
    ),
    case(
        "HS256",
        lambda f: with_signature(_good(f), lambda s: s[:-3]),
        "invalid signature",
        "hs256-truncated-signature",
    ),
    case(
        "EdDSA",
        lambda f: with_signature(_good(f), lambda s: s[:-3]),
        "invalid signature",
        "eddsa-truncated-signature",
    ),
    case(
        "HS256",
        lambda f: with_signature(_good(f), flip_first_byte),
        "invalid signature",
        "hs256-flipped-signature-byte",
    ),
    case(
        "ES256",
        lambda f: with_signature(_good(f), flip_first_byte),
        "invalid signature",
        "es256-flipped-signature-byte",
    ),
    case(
        "RS256",
        lambda f: with_signature(_good(f), flip_first_byte),
        "invalid signature",
        "rs256-flipped-signature-byte",
    ),
    case(
        "EdDSA",
        lambda f: "{}.{}.{}".format(
            _good(f).split(".")[0], b64json(f.claims(sub="admin")), _good(f).split(".")[2]
        ),
        "invalid signature",
        "payload-swapped-under-old-signature",
    ),
]


@pytest.mark.parametrize(
    ("alg", "build", "reason"),
    NONE_CASES + CONFUSION_CASES + SWAP_CASES + HEADER_CASES + CLAIM_CASES + FORM_CASES,
)
def test_broken_or_forged_token_is_refused_with_token_error(
    key_files: dict[str, Path],
    signing_keys: dict[str, Key],
    clock: FakeClock,
    alg: str,
    build: Case,
    reason: str,
) -> None:
    codec = codec_for(KeyRing(key_files[alg], clock=clock), clock)
    forge = forge_for(alg, signing_keys)
    token = build(forge)
    with pytest.raises(TokenError) as caught:
        codec.decode(token)
    assert caught.value.reason == reason


def test_the_forging_helper_makes_tokens_that_verify(
    key_files: dict[str, Path], signing_keys: dict[str, Key], clock: FakeClock
) -> None:
    """Guards the table above: each case is refused for its change, not a broken helper."""
    for alg in ALGORITHMS:
        codec = codec_for(KeyRing(key_files[alg], clock=clock), clock)
        assert codec.decode(forge_for(alg, signing_keys).token()).sub == "user-1"


@pytest.mark.parametrize("token", [None, b"a.b.c", 42, ["a", "b", "c"]], ids=repr)
def test_token_that_is_not_a_string_is_refused(
    key_files: dict[str, Path], clock: FakeClock, token: object
) -> None:
    codec = codec_for(KeyRing(key_files["HS256"], clock=clock), clock)
    with pytest.raises(TokenError, match="malformed token"):
        codec.decode(token)


def test_random_mutations_only_ever_raise_token_error(
    key_files: dict[str, Path], clock: FakeClock
) -> None:
    rng = random.Random(1234)
    alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ é\x00{}"'
    for alg in ("HS256", "ES256"):
        codec = codec_for(KeyRing(key_files[alg], clock=clock), clock)
        good, claims = codec.encode("user-1", "session-1")
        for _ in range(400):
            chars = list(good)
            for _ in range(rng.randint(1, 4)):
                position = rng.randrange(len(chars))
                action = rng.random()
                if action < 0.5:
                    chars[position] = rng.choice(alphabet)
                elif action < 0.75:
                    del chars[position]
                else:
                    chars.insert(position, rng.choice(alphabet))
            mutated = "".join(chars)
            with contextlib.suppress(TokenError):
                assert codec.decode(mutated) == claims


# --- what a good token carries ------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_token_round_trips_with_every_algorithm(
    key_files: dict[str, Path], clock: FakeClock, alg: str
) -> None:
    ring = KeyRing(key_files[alg], clock=clock)
    codec = codec_for(ring, clock)
    token, claims = codec.encode("user-1", "session-1")
    assert codec.decode(token) == claims
    assert claims == AccessClaims(
        sub="user-1",
        sid="session-1",
        iat=NOW,
        exp=NOW + TTL,
        jti=claims.jti,
        iss=ISSUER,
        aud=AUDIENCE,
    )


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_token_carries_the_expected_header_and_claims(
    key_files: dict[str, Path], clock: FakeClock, alg: str
) -> None:
    ring = KeyRing(key_files[alg], clock=clock)
    token, claims = codec_for(ring, clock).encode("user-1", "session-1")
    header_part, payload_part, _ = token.split(".")
    assert json.loads(unb64(header_part)) == {
        "alg": alg,
        "kid": ring.current().signing_kid,
        "typ": "at+jwt",
    }
    payload = json.loads(unb64(payload_part))
    assert payload == {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "sid": "session-1",
        "iat": NOW,
        "exp": NOW + TTL,
        "jti": claims.jti,
    }
    assert "=" not in token


def test_jti_is_128_random_bits_and_unique(key_files: dict[str, Path], clock: FakeClock) -> None:
    codec = codec_for(KeyRing(key_files["HS256"], clock=clock), clock)
    jtis = {codec.encode("user-1", "session-1")[1].jti for _ in range(200)}
    assert len(jtis) == 200
    assert all(len(unb64(jti)) == 16 for jti in jtis)


def test_extra_claims_round_trip_but_cannot_override_registered_ones(
    key_files: dict[str, Path], clock: FakeClock
) -> None:
    codec = codec_for(KeyRing(key_files["EdDSA"], clock=clock), clock)
    token, claims = codec.encode("user-1", "session-1", {"roles": ["admin"], "name": "Ann"})
    decoded = codec.decode(token)
    assert dict(decoded.extra) == {"roles": ["admin"], "name": "Ann"}
    assert decoded == claims
    for registered in ("sub", "sid", "exp", "iat", "nbf", "jti", "iss", "aud"):
        with pytest.raises(ValueError, match="registered"):
            codec.encode("user-1", "session-1", {registered: "x"})


@pytest.mark.parametrize(("sub", "sid"), [("", "s"), ("u", ""), (1, "s"), ("u", None)])
def test_encode_needs_string_sub_and_sid(
    key_files: dict[str, Path], clock: FakeClock, sub: Any, sid: Any
) -> None:
    codec = codec_for(KeyRing(key_files["HS256"], clock=clock), clock)
    with pytest.raises(ValueError, match="sub and sid"):
        codec.encode(sub, sid)


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "At+Jwt", "application/at+jwt"])
def test_typ_is_compared_case_insensitively_with_or_without_application_prefix(
    key_files: dict[str, Path], signing_keys: dict[str, Key], clock: FakeClock, typ: str
) -> None:
    codec = codec_for(KeyRing(key_files["ES256"], clock=clock), clock)
    forge = forge_for("ES256", signing_keys)
    assert codec.decode(forge.token(forge.header(typ=typ))).sid == "session-1"


def test_leeway_tolerates_small_clock_skew(
    key_files: dict[str, Path], signing_keys: dict[str, Key], clock: FakeClock
) -> None:
    codec = codec_for(KeyRing(key_files["HS256"], clock=clock), clock)
    forge = forge_for("HS256", signing_keys)
    just_expired = forge.claims(iat=NOW - TTL, exp=NOW - LEEWAY + 1)
    issued_ahead = forge.claims(iat=NOW + LEEWAY, exp=NOW + LEEWAY + TTL)
    not_before_soon = forge.claims(nbf=NOW + LEEWAY)
    for claims in (just_expired, issued_ahead, not_before_soon):
        assert codec.decode(forge.token(claims=claims)).sub == "user-1"


def test_token_expires_after_its_lifetime_by_the_injected_clock(
    key_files: dict[str, Path], clock: FakeClock
) -> None:
    codec = codec_for(KeyRing(key_files["EdDSA"], clock=clock), clock)
    token, _ = codec.encode("user-1", "session-1")
    clock.advance(TTL + LEEWAY - 1)
    codec.decode(token)
    clock.advance(1)
    with pytest.raises(TokenError, match="token expired"):
        codec.decode(token)


@pytest.mark.parametrize(
    "settings",
    [
        {"ttl": 0},
        {"leeway": 61},
        {"leeway": -1},
        {"issuer": ""},
        {"audience": ""},
    ],
    ids=["zero-ttl", "leeway-over-60", "negative-leeway", "empty-issuer", "empty-audience"],
)
def test_codec_refuses_unsafe_settings(
    key_files: dict[str, Path], clock: FakeClock, settings: dict[str, Any]
) -> None:
    arguments: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "ttl": TTL,
        "leeway": LEEWAY,
        "clock": clock,
        **settings,
    }
    with pytest.raises(ConfigError):
        AccessTokenCodec(KeyRing(key_files["HS256"], clock=clock), **arguments)


def test_encode_refuses_to_make_a_token_decode_would_refuse(
    key_files: dict[str, Path], clock: FakeClock
) -> None:
    codec = codec_for(KeyRing(key_files["HS256"], clock=clock), clock)
    with pytest.raises(ValueError, match="too long"):
        codec.encode("user-1", "session-1", {"blob": "x" * MAX_TOKEN_LENGTH})


def test_codec_repr_shows_no_key_material(key_files: dict[str, Path], clock: FakeClock) -> None:
    ring = KeyRing(key_files["HS256"], clock=clock)
    secret = ring.current().signing_key.private_jwk()["k"]
    assert secret not in repr(codec_for(ring, clock))


# --- keys over time and across processes --------------------------------------------------


def test_rotation_keeps_old_tokens_valid_until_prune_removes_their_key(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jwks.json"
    ring = KeyRing.load_or_create(path, "EdDSA", clock=clock, check_interval=5)
    codec = codec_for(ring, clock)
    old_token, _ = codec.encode("user-1", "session-1")
    old_kid = ring.current().signing_kid

    clock.advance(100)
    new_kid = keys.rotate(path, "EdDSA", clock).signing_kid
    clock.advance(5)
    new_token, _ = codec.encode("user-1", "session-2")
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid != old_kid
    assert codec.decode(old_token).sid == "session-1"
    assert codec.decode(new_token).sid == "session-2"

    # Too early: a token the old key signed just before the rotation may still be live.
    assert keys.prune(path, TTL, clock) == []

    # The operator's clock has moved past every possible old token; this process's fake
    # clock has not, so a refusal below can only come from the missing key.
    operator = FakeClock(clock.now + TTL + keys.PRUNE_GRACE_SECONDS + 1)
    assert keys.prune(path, TTL, operator) == [old_kid]
    clock.advance(5)
    with pytest.raises(TokenError, match="unknown key"):
        codec.decode(old_token)
    assert codec.decode(new_token).sid == "session-2"


def test_two_key_rings_on_one_file_accept_each_others_tokens(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jwks.json"
    first = codec_for(KeyRing.load_or_create(path, "ES256", clock=clock), clock)
    second = codec_for(KeyRing.load_or_create(path, "ES256", clock=clock), clock)
    token_one, claims_one = first.encode("user-1", "session-1")
    token_two, claims_two = second.encode("user-2", "session-2")
    assert second.decode(token_one) == claims_one
    assert first.decode(token_two) == claims_two


def test_key_ring_accepts_a_new_kid_from_a_rotation_it_has_not_seen_yet(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jwks.json"
    stale = codec_for(KeyRing.load_or_create(path, "HS256", clock=clock, check_interval=5), clock)
    keys.rotate(path, "HS256", clock)
    fresh = codec_for(KeyRing(path, clock=clock), clock)
    token, claims = fresh.encode("user-1", "session-1")
    # No time has passed: the stale ring only knows the new kid by re-reading at once.
    assert stale.decode(token) == claims


def test_key_ring_picks_up_a_rotation_by_another_writer_for_new_tokens(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jwks.json"
    ring = KeyRing.load_or_create(path, "HS256", clock=clock, check_interval=5)
    codec = codec_for(ring, clock)
    rotated = keys.rotate(path, "EdDSA", clock)
    clock.advance(5)
    token, _ = codec.encode("user-1", "session-1")
    header = jwt.get_unverified_header(token)
    assert (header["kid"], header["alg"]) == (rotated.signing_kid, "EdDSA")


def test_static_key_set_is_a_key_source(clock: FakeClock) -> None:
    keyset: KeySet = keys.new_key_set("EdDSA", NOW)
    codec = codec_for(keyset, clock)
    token, claims = codec.encode("user-1", "session-1")
    assert codec.decode(token) == claims


def test_an_unexpected_failure_inside_decode_is_still_a_token_error(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenSource:
        def current(self) -> KeySet:
            raise RuntimeError("boom")

        def refresh(self) -> KeySet:
            raise RuntimeError("boom")

    good = codec_for(keys.new_key_set("HS256", NOW), clock).encode("user-1", "session-1")[0]
    with pytest.raises(TokenError, match="invalid token"):
        codec_for(BrokenSource(), clock).decode(good)
    assert "unexpected error" in caplog.text
    assert good not in caplog.text
