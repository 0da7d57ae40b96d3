"""bastion.devices.describe (device labels) and bastion.redirects.safe_next (where to go next)."""

from __future__ import annotations

import time
from urllib.parse import urljoin, urlsplit

import pytest

from bastion.devices import UNKNOWN, describe
from bastion.redirects import DEFAULT_NEXT, login_url, safe_next

# ---- devices.describe ----------------------------------------------------------------------

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("user_agent", "label"),
    [
        (CHROME_WINDOWS, "Chrome 120 on Windows 10"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            "Edge 120 on Windows 10",
        ),
        (
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Firefox 121 on Ubuntu",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.1 Safari/605.1.15",
            "Safari 17 on Mac OS X 10",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            "Mobile Safari 17 on iOS 17 (iPhone)",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.6099.144 Mobile Safari/537.36",
            "Chrome Mobile 120 on Android 14 (Pixel 8)",
        ),
    ],
)
def test_common_browsers(user_agent: str, label: str) -> None:
    assert describe(user_agent) == label


@pytest.mark.parametrize(
    ("user_agent", "name"),
    [
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot"),
        ("curl/8.4.0", "curl"),
        ("Wget/1.21.4", "Wget"),
        ("python-requests/2.31.0", "Python Requests"),
        ("python-httpx/0.27.0", "python-httpx"),
        ("MyCompanyScript/1.0 (+https://example.com)", "MyCompanyScript"),
    ],
)
def test_bots_and_scripts_get_a_recognisable_name(user_agent: str, name: str) -> None:
    label = describe(user_agent)
    assert name in label
    assert label != UNKNOWN


@pytest.mark.parametrize("user_agent", [None, "", " ", "   \t  ", "\n"])
def test_missing_user_agent_is_unknown(user_agent: str | None) -> None:
    assert describe(user_agent) == UNKNOWN


@pytest.mark.parametrize(
    "user_agent",
    [
        "x" * 100_000,
        "Mozilla/5.0 " + "(" * 50_000,
        "Mozilla/5.0 (" + "a; " * 30_000 + ")",
        CHROME_WINDOWS + " " + "A" * 100_000,
        "\x00\x01\x02",
        "\u202eevil\u202c",
        "🙂" * 1000,
    ],
)
def test_long_and_odd_strings_give_a_short_printable_label(user_agent: str) -> None:
    started = time.perf_counter()
    label = describe(user_agent)
    assert time.perf_counter() - started < 2.0
    assert 0 < len(label) <= 120
    assert label.isprintable()


def test_a_long_tail_does_not_change_the_label() -> None:
    assert describe(CHROME_WINDOWS + " " + "A" * 100_000) == describe(CHROME_WINDOWS)


# ---- redirects.safe_next -------------------------------------------------------------------

GOOD = [
    "/",
    "/dashboard",
    "/account/sessions",
    "/a/b/c?x=1&y=2",
    "/search?q=%2F%2Fevil.com",
    "/page#section",
    "/path;params",
    "/%2F%2Fevil.com",  # percent-encoded slashes are a path, not an authority
    "/a//b",
    "/~user/",
]

EVIL = [
    None,
    "",
    "dashboard",
    "//evil.com",
    "///evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "\\/evil.com",
    "/\\/evil.com",
    "/a\\b",
    "https://evil.com",
    "http://evil.com/dashboard",
    "HTTPS://evil.com",
    "//evil.com/%2F..",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "mailto:a@b.c",
    "/dashboard\r\nSet-Cookie: x=1",
    "/dashboard\nLocation: https://evil.com",
    "/\r/evil.com",
    "/\t/evil.com",
    "/\x00",
    "/dashboard\x7f",
    " /dashboard",
    "\t//evil.com",
    "/ünïcödé",
    "/\uff0f\uff0fevil.com",  # fullwidth solidus
    "/\u2215\u2215evil.com",  # division slash
    "/" + "a" * 2048,
    "?next=//evil.com",
    "#//evil.com",
]


@pytest.mark.parametrize("value", GOOD)
def test_safe_next_keeps_same_origin_paths(value: str) -> None:
    assert safe_next(value) == value


@pytest.mark.parametrize("value", EVIL)
def test_safe_next_refuses_everything_else(value: str | None) -> None:
    assert safe_next(value) == DEFAULT_NEXT
    assert safe_next(value, default="/home") == "/home"


@pytest.mark.parametrize("value", GOOD + [v for v in EVIL if v is not None])
def test_safe_next_never_leaves_the_origin(value: str) -> None:
    # Whatever it returns, a browser resolving it against our page stays on our origin.
    base = "https://bastion.example/login"
    target = urlsplit(urljoin(base, safe_next(value)))
    assert (target.scheme, target.netloc) == ("https", "bastion.example")


def test_safe_next_accepts_the_longest_allowed_path() -> None:
    longest = "/" + "a" * 2047
    assert safe_next(longest) == longest


def test_login_url_carries_only_safe_paths() -> None:
    assert login_url("/account?tab=1") == "/login?next=/account%3Ftab%3D1"
    assert login_url("//evil.com") == f"/login?next={DEFAULT_NEXT}"
