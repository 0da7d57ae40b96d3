"""The verified-signature cache never lets a token past a check that must run every time."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion import keys
from bastion.clock import FakeClock
from bastion.exceptions import TokenError
from bastion.tokens import AccessTokenCodec


def codec_for(path: Path, clock: FakeClock) -> tuple[AccessTokenCodec, keys.KeyRing]:
    ring = keys.KeyRing.load_or_create(path, "HS256", clock=clock, check_interval=0)
    codec = AccessTokenCodec(ring, issuer="bastion", audience="bastion-api", ttl=600, clock=clock)
    return codec, ring


def test_a_cached_token_still_expires(tmp_path: Path) -> None:
    clock = FakeClock()
    codec, _ = codec_for(tmp_path / "jwks.json", clock)
    token, _ = codec.encode("1", "s" * 64)
    assert codec.decode(token).sub == "1"
    assert codec.decode(token).sub == "1"  # served from the cache
    clock.advance(600 + codec.leeway + 1)
    with pytest.raises(TokenError, match="expired"):
        codec.decode(token)


def test_a_cached_token_dies_with_its_pruned_key(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "jwks.json"
    codec, ring = codec_for(path, clock)
    token, _ = codec.encode("1", "s" * 64)
    codec.decode(token)
    keys.rotate(path, "HS256", clock=clock)
    clock.advance(120)
    keys.prune(path, 0, clock=clock)
    ring.refresh()
    with pytest.raises(TokenError, match="unknown key"):
        codec.decode(token)


def test_a_tampered_copy_of_a_cached_token_is_verified_again(tmp_path: Path) -> None:
    codec, _ = codec_for(tmp_path / "jwks.json", FakeClock())
    token, _ = codec.encode("1", "s" * 64)
    codec.decode(token)
    header, payload, signature = token.split(".")
    forged = (
        f"{header}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    )
    with pytest.raises(TokenError):
        codec.decode(forged)
