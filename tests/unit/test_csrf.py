"""bastion.csrf: masked session-bound tokens and Origin/Referer/Sec-Fetch-Site checks.

Modelled on Django's tests/csrf_tests, against CONTRACT section 4 item 4.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.csrf import (
    SAFE_METHODS,
    check_request,
    is_same_origin,
    mask_token,
    new_csrf_secret,
    normalise_origin,
    request_origin,
    rotate_csrf_secret,
    token_matches,
)
from bastion.exceptions import CSRFError

SECRET = new_csrf_secret()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def request(**overrides: Any) -> dict[str, Any]:
    """A genuine same-origin HTTPS form POST; each test spoils one thing."""
    base: dict[str, Any] = {
        "method": "POST",
        "secure": True,
        "host": "example.com",
        "origin": "https://example.com",
        "referer": None,
        "sec_fetch_site": "same-origin",
        "token": mask_token(SECRET),
        "secret": SECRET,
        "trusted_origins": (),
    }
    base.update(overrides)
    return base


def refused(reason: str, **overrides: Any) -> None:
    with pytest.raises(CSRFError) as caught:
        check_request(**request(**overrides))
    assert caught.value.reason == reason


def accepted(**overrides: Any) -> None:
    check_request(**request(**overrides))


# ---- secrets and tokens ---------------------------------------------------------------


def test_new_secret_is_32_random_bytes_in_base64url() -> None:
    secret = new_csrf_secret()
    assert len(secret) == 43
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert new_csrf_secret() != secret


def test_rotation_gives_a_new_secret_that_old_tokens_do_not_match() -> None:
    old_token = mask_token(SECRET)
    rotated = rotate_csrf_secret()
    assert rotated != SECRET
    assert not token_matches(old_token, rotated)


def test_masked_token_matches_its_secret() -> None:
    assert token_matches(mask_token(SECRET), SECRET)


def test_two_masked_tokens_of_one_secret_differ_but_both_match() -> None:
    first, second = mask_token(SECRET), mask_token(SECRET)
    assert first != second
    assert token_matches(first, SECRET)
    assert token_matches(second, SECRET)


def test_masked_token_does_not_contain_the_secret() -> None:
    token = mask_token(SECRET)
    assert SECRET not in token
    assert base64.urlsafe_b64decode(SECRET + "=") not in base64.urlsafe_b64decode(token + "==")


def test_reusing_a_valid_token_is_allowed() -> None:
    token = mask_token(SECRET)
    assert token_matches(token, SECRET)
    assert token_matches(token, SECRET)
    accepted(token=token)
    accepted(token=token)


def test_token_from_another_sessions_secret_does_not_match() -> None:
    assert not token_matches(mask_token(new_csrf_secret()), SECRET)


def test_unmasked_raw_secret_is_not_a_token() -> None:
    assert not token_matches(SECRET, SECRET)


def test_token_with_a_flipped_byte_does_not_match() -> None:
    raw = bytearray(base64.urlsafe_b64decode(mask_token(SECRET) + "=="))
    raw[40] ^= 1
    assert not token_matches(b64(bytes(raw)), SECRET)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("A" * 85, id="short"),
        pytest.param("A" * 87, id="long"),
        pytest.param("A" * 86 + "==", id="padded-long"),
        pytest.param("A" * 84 + "==", id="padded-right-length"),
        pytest.param("A" * 85 + "é", id="non-ascii"),
        pytest.param("A" * 85 + "\u212a", id="kelvin-sign"),
        pytest.param("A" * 85 + "+", id="standard-base64-plus"),
        pytest.param("A" * 85 + "/", id="standard-base64-slash"),
        pytest.param("A" * 85 + "!", id="punctuation"),
        pytest.param("A" * 85 + "\n", id="newline"),
        pytest.param(" " + "A" * 85, id="leading-space"),
        pytest.param("A" * 85 + "\x00", id="nul"),
        pytest.param("A" * 10_000, id="very-long"),
        pytest.param(b"A" * 86, id="bytes"),
        pytest.param(12345, id="int"),
    ],
)
def test_malformed_tokens_do_not_match(bad: Any) -> None:
    assert token_matches(bad, SECRET) is False


def test_token_with_non_canonical_trailing_bits_does_not_match() -> None:
    token = mask_token(SECRET)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    variant = token[:-1] + alphabet[last ^ 1]  # 86 chars carry 4 unused bits at the end
    assert base64.urlsafe_b64decode(variant + "==") == base64.urlsafe_b64decode(token + "==")
    assert not token_matches(variant, SECRET)


@pytest.mark.parametrize(
    "bad_secret",
    [None, "", "short", SECRET + "A", "é" * 43, 42],
    ids=["none", "empty", "short", "too-long", "non-ascii", "int"],
)
def test_malformed_secret_never_matches(bad_secret: Any) -> None:
    assert token_matches(mask_token(SECRET), bad_secret) is False


def test_mask_token_refuses_a_value_that_is_not_a_secret() -> None:
    with pytest.raises(ValueError, match="CSRF secret"):
        mask_token("not a secret")


@given(st.text(), st.text())
def test_token_matches_never_raises_on_arbitrary_text(token: str, secret: str) -> None:
    assert token_matches(token, secret) is False


@given(st.text())
def test_token_matches_never_raises_against_a_real_secret(token: str) -> None:
    assert token_matches(token, SECRET) is False


@given(st.binary(min_size=64, max_size=64))
def test_only_the_right_unmasking_matches(raw: bytes) -> None:
    # Random 64-byte tokens are well-formed but (overwhelmingly) do not unmask to SECRET.
    assert token_matches(b64(raw), SECRET) is False


# ---- origin helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "host", "expected"),
    [
        ("https", "example.com", "https://example.com"),
        ("https", "Example.COM", "https://example.com"),
        ("HTTPS", "example.com", "https://example.com"),
        ("https", "example.com:443", "https://example.com"),
        ("http", "example.com:80", "http://example.com"),
        ("http", "example.com:443", "http://example.com:443"),
        ("https", "example.com:8443", "https://example.com:8443"),
        ("http", "127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http", "[::1]:8000", "http://[::1]:8000"),
        ("http", "[0:0:0:0:0:0:0:1]", "http://[::1]"),
        ("https", "[2001:DB8::1]:443", "https://[2001:db8::1]"),
        ("http", "my_service:8000", "http://my_service:8000"),
    ],
)
def test_request_origin_normalises(scheme: str, host: str, expected: str) -> None:
    assert request_origin(scheme, host) == expected


@pytest.mark.parametrize(
    ("scheme", "host"),
    [
        ("https", ""),
        ("https", "example.com:"),
        ("https", "example.com:0"),
        ("https", "example.com:65536"),
        ("https", "example.com:123456"),
        ("https", "example.com:-1"),
        ("https", "example.com:+443"),
        ("https", "user@example.com"),
        ("https", "example.com/path"),
        ("https", "example.com example.org"),
        ("https", "exámple.com"),
        ("https", "\u212aite.com"),  # Kelvin sign lowercases to "k"
        ("https", "[::1"),
        ("https", "::1"),
        ("https", "[not-ipv6]"),
        ("https", "[::1%25eth0]"),
        ("https", "a" * 254),
        ("ftp", "example.com"),
        ("", "example.com"),
    ],
)
def test_request_origin_refuses_malformed_hosts(scheme: str, host: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        request_origin(scheme, host)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://example.com", "https://example.com", True),
        ("https://example.com:443", "https://example.com", True),
        ("HTTPS://EXAMPLE.COM", "https://example.com", True),
        ("http://example.com:80", "http://example.com", True),
        ("http://[::1]:8000", "http://[0::1]:8000", True),
        ("https://example.com", "http://example.com", False),
        ("https://example.com", "https://example.com:8443", False),
        ("https://example.com", "https://www.example.com", False),
        ("https://example.com", "https://example.com.evil.test", False),
        ("https://example.com/", "https://example.com", False),  # not an origin
        ("https://example.com", "null", False),
        ("null", "null", False),
        ("", "", False),
        ("https://\u212aite.com", "https://kite.com", False),
    ],
)
def test_is_same_origin(a: str, b: str, same: bool) -> None:
    assert is_same_origin(a, b) is same
    assert is_same_origin(b, a) is same


def test_normalise_origin_returns_none_for_anything_malformed() -> None:
    assert normalise_origin("https://Example.com:443") == "https://example.com"
    assert normalise_origin("https://example.com/path") is None
    assert normalise_origin("https://user:pw@example.com") is None
    assert normalise_origin("example.com") is None


# ---- check_request: methods -----------------------------------------------------------


@pytest.mark.parametrize("method", sorted(SAFE_METHODS))
def test_safe_methods_pass_without_any_check(method: str) -> None:
    accepted(method=method, origin="https://evil.test", sec_fetch_site="cross-site", token=None)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "CONNECT", "PROPFIND"])
def test_unsafe_methods_are_checked(method: str) -> None:
    accepted(method=method)
    refused("origin mismatch", method=method, origin="https://evil.test")


def test_lowercase_get_is_not_treated_as_safe() -> None:
    refused("origin mismatch", method="get", origin="https://evil.test")


# ---- check_request: Sec-Fetch-Site ----------------------------------------------------


@pytest.mark.parametrize("value", ["cross-site", "Cross-Site", " cross-site "])
def test_cross_site_fetch_is_refused(value: str) -> None:
    refused("cross-site request", sec_fetch_site=value)


def test_cross_site_fetch_is_refused_even_from_a_trusted_origin() -> None:
    refused(
        "cross-site request",
        origin="https://partner.test",
        sec_fetch_site="cross-site",
        trusted_origins=["https://partner.test"],
    )


@pytest.mark.parametrize("value", ["same-origin", "none", None, "unknown-value"])
def test_non_cross_site_fetch_values_pass_with_a_good_origin(value: str | None) -> None:
    accepted(sec_fetch_site=value)


def test_same_site_sibling_subdomain_is_refused_by_the_origin_check() -> None:
    refused("origin mismatch", origin="https://evil.example.com", sec_fetch_site="same-site")


def test_same_site_sibling_subdomain_passes_when_trusted() -> None:
    accepted(
        origin="https://admin.example.com",
        sec_fetch_site="same-site",
        trusted_origins=["https://admin.example.com"],
    )


@pytest.mark.parametrize("value", ["same-origin", "none"])
def test_sec_fetch_site_never_overrides_a_bad_origin(value: str) -> None:
    refused("origin mismatch", origin="https://evil.test", sec_fetch_site=value)


# ---- check_request: Origin ------------------------------------------------------------


def test_same_origin_post_with_valid_token_passes() -> None:
    accepted()


def test_http_same_origin_post_passes() -> None:
    accepted(secure=False, origin="http://example.com")


def test_origin_on_another_host_is_refused() -> None:
    refused("origin mismatch", origin="https://evil.test")


def test_origin_that_extends_our_host_is_refused() -> None:
    refused("origin mismatch", origin="https://example.com.evil.test")


def test_parent_domain_origin_is_refused() -> None:
    refused("origin mismatch", host="app.example.com", origin="https://example.com")


def test_subdomain_origin_is_refused() -> None:
    refused("origin mismatch", origin="https://sub.example.com")


def test_null_origin_is_refused() -> None:
    refused("origin null", origin="null")
    refused("origin null", origin="null", trusted_origins=["null"])


def test_https_origin_on_http_request_is_refused() -> None:
    refused("origin mismatch", secure=False, origin="https://example.com")


def test_http_origin_on_https_request_is_refused() -> None:
    refused("origin mismatch", origin="http://example.com")


def test_origin_port_mismatch_is_refused() -> None:
    refused("origin mismatch", origin="https://example.com:8443")
    refused("origin mismatch", host="example.com:8443", origin="https://example.com")
    refused("origin mismatch", host="example.com:8443", origin="https://example.com:9443")


def test_origin_with_matching_port_passes() -> None:
    accepted(host="example.com:8443", origin="https://example.com:8443")
    accepted(secure=False, host="localhost:8000", origin="http://localhost:8000")


def test_default_ports_are_normalised_away() -> None:
    accepted(origin="https://example.com:443")
    accepted(host="example.com:443", origin="https://example.com")
    accepted(secure=False, host="example.com:80", origin="http://example.com")


def test_hosts_compare_case_insensitively() -> None:
    accepted(host="EXAMPLE.com", origin="https://Example.COM")


def test_ipv6_literal_hosts_match() -> None:
    accepted(secure=False, host="[::1]:8000", origin="http://[::1]:8000")
    refused("origin mismatch", secure=False, host="[::1]:8000", origin="http://[::2]:8000")


@pytest.mark.parametrize(
    "host",
    ["", "example.com:", "example.com:99999", "exámple.com", "[::1", "a b", "example.com/x"],
)
def test_malformed_host_never_matches(host: str) -> None:
    refused("origin mismatch", host=host, origin="https://example.com")


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "example.com",
        "https://",
        "https://example.com/",
        "https://example.com/path",
        "https://user@example.com",
        "https://example.com, https://example.com",
        "https://example.com:443:443",
        "https://[",
        "ftp://example.com",
        "javascript:alert(1)",
        "https://exámple.com",
        "https://\u212aexample.com",
        "https://" + "a" * 10_000 + ".com",
    ],
)
def test_malformed_origin_is_refused(origin: str) -> None:
    refused("origin malformed", origin=origin)


def test_unicode_lookalike_origin_does_not_fold_into_our_host() -> None:
    refused("origin malformed", host="kite.com", origin="https://\u212aite.com")


def test_trusted_origin_passes() -> None:
    accepted(origin="https://other.example.com", trusted_origins=["https://other.example.com"])


def test_trusted_origins_are_normalised() -> None:
    accepted(origin="https://other.example.com", trusted_origins=["HTTPS://Other.Example.com:443"])


def test_trusted_origin_must_match_scheme_and_port() -> None:
    trusted = ["https://other.example.com"]
    refused("origin mismatch", origin="http://other.example.com", trusted_origins=trusted)
    refused("origin mismatch", origin="https://other.example.com:8443", trusted_origins=trusted)


def test_malformed_trusted_origins_are_ignored() -> None:
    refused("origin mismatch", origin="https://evil.test", trusted_origins=["*", "https://"])


def test_trusted_origins_have_no_wildcards() -> None:
    refused(
        "origin mismatch",
        origin="https://a.example.com",
        trusted_origins=["https://*.example.com"],
    )


def test_origin_is_checked_even_when_a_good_referer_is_sent() -> None:
    refused("origin mismatch", origin="https://evil.test", referer="https://example.com/form")


# ---- check_request: Referer (no Origin) -----------------------------------------------


def test_same_origin_referer_passes_without_origin() -> None:
    accepted(origin=None, referer="https://example.com/login?next=/x#frag")


def test_referer_without_path_passes() -> None:
    accepted(origin=None, referer="https://example.com")


def test_referer_with_default_port_passes() -> None:
    accepted(origin=None, referer="https://example.com:443/form")


def test_both_origin_and_referer_missing_is_refused() -> None:
    refused("origin missing", origin=None, referer=None)
    refused("origin missing", origin=None, referer="")


def test_referer_on_another_host_is_refused() -> None:
    refused("referer mismatch", origin=None, referer="https://evil.test/form")


def test_referer_on_a_subdomain_is_refused() -> None:
    refused("referer mismatch", origin=None, referer="https://sub.example.com/form")


def test_referer_with_wrong_port_is_refused() -> None:
    refused("referer mismatch", origin=None, referer="https://example.com:8443/form")


def test_https_to_http_referer_downgrade_is_refused() -> None:
    refused("referer insecure", origin=None, referer="http://example.com/form")


def test_http_referer_on_http_request_passes() -> None:
    accepted(secure=False, origin=None, referer="http://example.com/form")


def test_https_referer_on_http_request_is_refused() -> None:
    refused("referer mismatch", secure=False, origin=None, referer="https://example.com/")


def test_referer_from_trusted_origin_passes() -> None:
    accepted(
        origin=None,
        referer="https://other.example.com/page",
        trusted_origins=["https://other.example.com"],
    )


@pytest.mark.parametrize(
    "referer",
    [
        "http://[",
        "https://[",
        "https://",
        "https:///path",
        "ftp://example.com/",
        "//example.com",
        "/relative/path",
        "example.com",
        "https:example.com",
        "javascript:alert(1)",
        "data:text/html,x",
        "https://exámple.com/",
        "https://example.com/é",
        "https://\u212aexample.com/",
        "https://example.com\\@evil.test/",
        "https://example.com@evil.test/",
        "https://user:pw@example.com/",
        "https://example.com:99999/",
        "https://example.com:/",
        "https://example.com /",
        "https://example.com/\x00",
        "https://" + "a" * 300 + ".com/",
    ],
)
def test_malformed_referer_is_refused(referer: str) -> None:
    refused("referer malformed", origin=None, referer=referer)


def test_very_long_same_origin_referer_passes() -> None:
    accepted(origin=None, referer="https://example.com/" + "a" * 100_000)


def test_very_long_foreign_referer_is_refused() -> None:
    refused("referer mismatch", origin=None, referer="https://evil.test/" + "a" * 100_000)


# ---- check_request: session and token -------------------------------------------------


def test_request_without_session_is_refused() -> None:
    refused("no session", secret=None)


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token_is_refused(token: str | None) -> None:
    refused("token missing", token=token)


def test_token_from_another_session_is_refused() -> None:
    refused("token incorrect", token=mask_token(new_csrf_secret()))


def test_raw_secret_as_token_is_refused() -> None:
    refused("token incorrect", token=SECRET)


@pytest.mark.parametrize("token", ["x", "A" * 85, "A" * 87, "é" * 86, "A" * 84 + "=="])
def test_malformed_token_is_refused(token: str) -> None:
    refused("token incorrect", token=token)


def test_good_origin_does_not_excuse_a_bad_token() -> None:
    refused("token incorrect", token=mask_token(new_csrf_secret()))


@given(
    method=st.sampled_from(["POST", "PUT", "DELETE", "get", "GET"]),
    secure=st.booleans(),
    host=st.text(max_size=40),
    origin=st.none() | st.text(max_size=60),
    referer=st.none() | st.text(max_size=60),
    sec_fetch_site=st.none() | st.text(max_size=20),
    token=st.none() | st.text(max_size=100),
    secret=st.none() | st.text(max_size=50),
)
def test_check_request_raises_only_csrf_error_on_arbitrary_headers(
    method: str,
    secure: bool,
    host: str,
    origin: str | None,
    referer: str | None,
    sec_fetch_site: str | None,
    token: str | None,
    secret: str | None,
) -> None:
    try:
        check_request(
            method=method,
            secure=secure,
            host=host,
            origin=origin,
            referer=referer,
            sec_fetch_site=sec_fetch_site,
            token=token,
            secret=secret,
            trusted_origins=["https://trusted.example"],
        )
    except CSRFError:
        pass
    else:
        assert method == "GET"


def test_csrf_imports_neither_fastapi_nor_starlette() -> None:
    code = (
        "import sys, bastion.csrf; "
        "sys.exit(any(m.split('.')[0] in ('fastapi', 'starlette') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
