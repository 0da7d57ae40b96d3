"""The caching headers @cached puts on an answer (bastion.fastapi.caching)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders

from bastion.fastapi.caching import _caching_headers


def test_a_private_answer_without_either_header_gets_both() -> None:
    headers = MutableHeaders(raw=[(b"x-own", b"1")])
    _caching_headers(headers, "user", 42)
    assert headers.raw == [
        (b"x-own", b"1"),
        (b"cache-control", b"private, max-age=42"),
        (b"vary", b"Authorization, Cookie, Accept-Language"),  # each name once
    ]


def test_a_public_answer_varies_on_what_chose_its_language_only() -> None:
    headers = MutableHeaders(raw=[])
    _caching_headers(headers, "public", 0)
    assert headers.raw == [
        (b"cache-control", b"public, max-age=0"),
        (b"vary", b"Accept-Language, Cookie"),
    ]


def test_the_endpoints_own_vary_is_kept_and_completed_once() -> None:
    headers = MutableHeaders(raw=[(b"vary", b"Origin, cookie")])
    _caching_headers(headers, "role", 5)
    assert headers["cache-control"] == "private, max-age=5"
    assert headers.getlist("vary") == ["Origin, cookie, Authorization, Accept-Language"]


def test_the_endpoints_own_cache_control_is_replaced() -> None:
    headers = MutableHeaders(raw=[(b"cache-control", b"max-age=999")])
    _caching_headers(headers, "public", 7)
    assert headers.getlist("cache-control") == ["public, max-age=7"]
    assert headers["vary"] == "Accept-Language, Cookie"
