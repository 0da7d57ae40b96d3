"""Every page Bastion renders, in its normal and error states, as scripts of steps that a
browser (tests/browser/test_accessibility.py: axe-core) and an in-process HTTP client
(tests/e2e/test_untranslated.py: no English left in Chinese) both follow.

A scenario is a list of steps: go to a path, submit a form of the current page (again
until an answer's status comes), follow the link of the last mail sent to an address, add
a passkey, and ``Check`` the page in hand (the one place a runner looks at it). A runner
first creates the users of ``ALL_USERS``, in that order (alice is user 1, bob user 2);
each language has its own (``carol_en``, ``carol_zh``), so the two runs of a scenario do
not meet, and the users a scenario signs up itself are named after its language too.

The site runs with open registration, required address verification (so that the pages of
a held-back sign-in are reached), mail to its file outbox, and two external providers:
``github`` (a GitHub app whose endpoints are on a dead port: connecting shows the page that
goes on to it) and ``down`` (an OpenID Connect issuer nobody answers for: 503).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pyotp

PASSWORD = "inventory password 1"
NEW_PASSWORD = "inventory password 2, longer"
DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there
LANGUAGES = ("en", "zh-CN")

# The site's settings, as environment variables (a live server) or Settings fields.
SITE_SETTINGS: dict[str, str] = {
    "registration": "open",
    "registration_ip_limit": "1000/hour",
    "email_verification": "required",
    "email_backend": "file",
    "login_ip_limit": "1000/minute",
    "password_reset_ip_limit": "1000/hour",
    "oauth_providers": "github,down",
}
PROVIDER_SETTINGS: dict[str, str] = {
    "BASTION_OAUTH_GITHUB_KIND": "github",
    "BASTION_OAUTH_GITHUB_CLIENT_ID": "inventory-client",
    "BASTION_OAUTH_GITHUB_CLIENT_SECRET": "inventory-secret",
    "BASTION_OAUTH_GITHUB_LABEL": "GitHub",
    "BASTION_OAUTH_GITHUB_GITHUB_URL": DEAD,
    "BASTION_OAUTH_GITHUB_GITHUB_API_URL": DEAD,
    "BASTION_OAUTH_DOWN_ISSUER": DEAD,
    "BASTION_OAUTH_DOWN_CLIENT_ID": "inventory-client",
    "BASTION_OAUTH_DOWN_CLIENT_SECRET": "inventory-secret",
    "BASTION_OAUTH_DOWN_LABEL": "Corp ID",
}


# Scenarios that need a site with other settings (a second site is started for them).
SCENARIO_SETTINGS: dict[str, dict[str, str]] = {
    "unverified-address": {"email_verification": "optional"},
}


def site_settings(scenario: str | None = None) -> dict[str, str]:
    """The Settings fields of the site a scenario runs on."""
    return {**SITE_SETTINGS, **SCENARIO_SETTINGS.get(scenario or "", {})}


def site_environment(scenario: str | None = None) -> dict[str, str]:
    """The site's settings as ``BASTION_*`` variables (for ``bastion serve``)."""
    return {
        **{f"BASTION_{name.upper()}": value for name, value in site_settings(scenario).items()},
        **PROVIDER_SETTINGS,
    }


# What a field's value may be: text, or text worked out from the page in hand (its HTML).
Value = str | Callable[[str], str]


@dataclass(frozen=True)
class Goto:
    path: str


@dataclass(frozen=True)
class Submit:
    """Fill ``fields`` of the first form of the page whose ``action`` is this one (or, for
    an action ending in ``*``, starts with it) and that has all those fields, then press
    its submit button (``button``: the one with that ``name=value``). Hidden fields (the
    CSRF token) go as the page has them."""

    action: str
    fields: Mapping[str, Value] = field(default_factory=dict)
    button: tuple[str, str] | None = None


@dataclass(frozen=True)
class MailLink:
    """Go to the link (its path) in the last mail to ``to`` whose link matches ``pattern``."""

    to: str
    pattern: str


@dataclass(frozen=True)
class AddPasskey:
    """On /account/security, add a passkey named ``name`` (the browser with a virtual
    authenticator and the page's own script; HTTP with tests/soft_authenticator.py), and
    land on the page that says it was added."""

    name: str


@dataclass(frozen=True)
class Check:
    """Look at the page in hand: ``label`` names it in reports; it must have answered with
    ``status`` and, with ``has``, contain the element of that id (so an error state really
    is one)."""

    label: str
    status: int = 200
    has: str | None = None
    table: bool = False  # a page with a table: also checked at 320 px by the browser


@dataclass(frozen=True)
class RepeatUntil:
    """Submit ``step`` again until the answer has ``status`` (at most ``tries`` times)."""

    step: Submit
    status: int
    tries: int


Step = Goto | Submit | RepeatUntil | MailLink | AddPasskey | Check


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False


def suffix(language: str) -> str:
    return "zh" if language == "zh-CN" else "en"


def users(language: str) -> list[User]:
    """The users a language's scenarios sign in as (alice and bob shared, created first)."""
    s = suffix(language)
    return [
        User("alice", admin=True),
        User("bob"),
        User(f"carol_{s}"),
        User(f"dave_{s}"),
        User(f"pat_{s}"),
    ]


ALL_USERS = [
    User("alice", admin=True),
    User("bob"),
    *(u for language in LANGUAGES for u in users(language)[2:]),
]
BOB_ID = 2

# --- page helpers ---------------------------------------------------------------------

TOTP_SECRET = re.compile(r'id="totp-secret">\s*([A-Z2-7 ]+?)\s*<')


def totp_secret(html: str) -> str:
    match = TOTP_SECRET.search(html)
    assert match, "the page shows no #totp-secret"
    return match.group(1).replace(" ", "")


def totp_code(secret: str, offset: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset)


def wrong_code(secret: str) -> str:
    """A code the app does not show now, nor one step before or after."""
    right = {totp_code(secret, offset) for offset in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in right)


def mail_link(outbox: Path, to: str, pattern: str, wait: float = 30.0) -> str:
    """The path of the link matching ``pattern`` in the newest mail to ``to`` in the file
    backend's outbox (waiting for it to be written: mail goes out after the answer)."""
    deadline = time.monotonic() + wait
    found: list[str] = []
    while True:
        for message in reversed(read_outbox(outbox)):
            if to not in str(message["To"]):
                continue
            body = message.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            found = re.findall(r"https?://[^/\s]+(/\S*)", text)
            for path in found:
                if re.search(pattern, path):
                    return path
        if time.monotonic() > deadline:
            raise AssertionError(f"no mail to {to} with a link matching {pattern!r}")
        time.sleep(0.1)


def read_outbox(outbox: Path) -> list[EmailMessage]:
    """The messages in the outbox, oldest first."""
    if not outbox.exists():
        return []
    messages = []
    for path in sorted(outbox.glob("*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


# --- scenarios ------------------------------------------------------------------------


def sign_in(name: str, password: str = PASSWORD) -> list[Step]:
    return [Goto("/login"), Submit("/login", {"username": name, "password": password})]


def anonymous_pages(language: str) -> list[Step]:
    s = suffix(language)
    return [
        Goto("/login"),
        Check("login"),
        Submit("/login", {"username": f"nobody_{s}", "password": "wrong password"}),
        Check("login: wrong user name or password", status=400, has="form-error"),
        Goto("/register"),
        Check("register"),
        Submit(
            "/register",
            {"username": f"x_{s}", "email": "", "password": "short", "password_confirm": "short"},
        ),
        Check("register: address required / password policy", status=400, has="form-error"),
        Submit(
            "/register",
            {
                "username": f"x_{s}",
                "email": f"x_{s}@example.com",
                "password": PASSWORD,
                "password_confirm": PASSWORD + "x",
            },
        ),
        Check("register: passwords differ", status=400, has="form-error"),
        Goto("/password/forgot"),
        Check("forgot password"),
        Submit("/password/forgot", {"email": ""}),
        Check("forgot password: no address", status=400, has="form-error"),
        Submit("/password/forgot", {"email": f"nobody_{s}@example.com"}),
        Check("forgot password: sent"),
        Goto("/password/reset/not-a-token"),
        Check("reset link invalid", status=400, has="link-title"),
        Goto("/email/verify/not-a-token"),
        Check("address link invalid", status=400, has="link-title"),
        Goto("/no-such-page"),
        Check("error 404", status=404),
        Goto("/logout"),
        Check("error 405", status=405),
        Goto("/login/oauth/down"),
        Check("error 503 (provider down)", status=503),
        Goto("/login/oauth/github/callback?state=forged&code=forged"),
        Check("error 400 (external sign-in refused)", status=400),
    ]


def throttled_sign_in(language: str) -> list[Step]:
    """Wrong passwords for one name until the account's back-off holds the next."""
    s = suffix(language)
    wrong = Submit("/login", {"username": f"ghost_{s}", "password": "wrong password"})
    return [Goto("/login"), *([wrong] * 5), RepeatUntil(wrong, status=429, tries=8),
            Check("login: throttled (429)", status=429, has="form-error")]  # fmt: skip


def registration(language: str) -> list[Step]:
    """A new account through the pages: sign-up, the held-back sign-in, the address link,
    then a forgotten password and its reset form."""
    s = suffix(language)
    name, address = f"newbie_{s}", f"newbie_{s}@example.com"
    return [
        Goto("/register"),
        Submit(
            "/register",
            {
                "username": name,
                "email": address,
                "password": PASSWORD,
                "password_confirm": PASSWORD,
            },
        ),
        Check("verify sent (after sign-up)", has="sent-title"),
        *sign_in(name),
        Check("login: address not verified yet (resend offered)", status=403, has="form-error"),
        Submit("/email/verify/resend"),
        Check("verify sent (resent)", has="sent-title"),
        MailLink(address, r"^/email/verify/"),
        Check("address confirmed", has="confirmed-title"),
        Goto("/password/forgot"),
        Submit("/password/forgot", {"email": address}),
        MailLink(address, r"^/password/reset/"),
        Check("reset password form"),
        Submit(
            "/password/reset",
            {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD + "x"},
        ),
        Check("reset password: passwords differ", status=400, has="form-error"),
        Submit("/password/reset", {"new_password": "short", "new_password_confirm": "short"}),
        Check("reset password: policy", status=400, has="form-error"),
    ]


def account_pages(language: str) -> list[Step]:
    s = suffix(language)
    carol = f"carol_{s}"
    return [
        *sign_in(carol),
        Check("dashboard"),
        Goto("/account/sessions"),
        Check("account sessions", table=True),
        Goto("/account/password"),
        Check("account password"),
        Submit(
            "/account/password",
            {
                "current_password": "not my password",
                "new_password": NEW_PASSWORD,
                "new_password_confirm": NEW_PASSWORD,
            },
        ),
        Check("account password: wrong current password", status=400, has="form-error"),
        Submit(
            "/account/password",
            {
                "current_password": PASSWORD,
                "new_password": "short",
                "new_password_confirm": "short",
            },
        ),
        Check("account password: policy", status=400, has="form-error"),
        Goto("/account/email"),
        Check("account e-mail"),
        Submit("/account/email", {"email": "not an address", "current_password": PASSWORD}),
        Check("account e-mail: invalid address", status=400, has="form-error"),
        Submit("/account/email", {"email": f"{carol}@example.com", "current_password": "wrong"}),
        Check("account e-mail: wrong password", status=400, has="form-error"),
        Submit("/account/email", {"email": f"{carol}@example.com", "current_password": PASSWORD}),
        Check("account e-mail: confirmation link sent"),
        Goto("/account/password"),
        Submit(
            "/account/password",
            {
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "new_password_confirm": NEW_PASSWORD,
            },
        ),
        Check("account password: changed"),
        Goto("/account/security"),
        Check("account security (passkeys section)"),
        Goto("/account/connections"),
        Check("account connections"),
        Submit("/account/connections/github/link"),
        Check("provider continue", has="continue"),
        Goto("/reauth?next=/account/password"),
        Check("re-authentication"),
        Submit("/reauth", {"password": "not my password"}),
        Check("re-authentication: wrong password", status=400, has="form-error"),
        Goto("/admin/users"),
        Check("error 403 (not an admin)", status=403),
        Submit("/logout"),
        Check("login after sign-out"),
    ]


def second_factor(language: str) -> list[Step]:
    s = suffix(language)
    dave = f"dave_{s}"
    secret: dict[str, str] = {}

    def remember(html: str) -> str:
        secret["totp"] = totp_secret(html)
        return wrong_code(secret["totp"])

    return [
        *sign_in(dave),
        Goto("/account/totp"),
        Check("authenticator app setup"),
        Submit("/account/totp", {"code": remember}),
        Check("authenticator app setup: wrong code", status=400, has="form-error"),
        Submit("/account/totp", {"code": lambda html: totp_code(totp_secret(html))}),
        Check("authenticator app on: recovery codes shown"),
        Goto("/account/security"),
        Check("account security (factor on)"),
        Submit("/account/recovery-codes"),
        Check("new recovery codes", has="codes-title"),
        Goto("/reauth?next=/account/security"),
        Check("re-authentication with a factor"),
        Submit("/reauth", {"code": lambda html: wrong_code(secret["totp"])}),
        Check("re-authentication: wrong code", status=400, has="form-error"),
        Submit("/logout"),
        *sign_in(dave),
        Check("login verify (second step)"),
        Submit("/login/verify", {"code": lambda html: wrong_code(secret["totp"])}),
        Check("login verify: wrong code", status=400, has="form-error"),
        Submit("/login/verify", {"recovery_code": "aaaa-bbbb"}),
        Check("login verify: wrong recovery code", status=400, has="form-error"),
    ]


def admin_pages(language: str) -> list[Step]:
    s = suffix(language)
    return [
        *sign_in("alice"),
        Check("dashboard (admin)"),
        Goto("/admin/users"),
        Check("admin users", table=True, has="users-title"),
        Goto("/admin/users?q=nobody-at-all"),
        Check("admin users: nothing found"),
        Goto("/admin/users/new"),
        Check("admin new user"),
        Submit(
            "/admin/users/new",
            {
                "username": f"made_{s}",
                "email": "",
                "password": "short",
                "password_confirm": "short",
            },
        ),
        Check("admin new user: policy", status=400, has="form-error"),
        Submit(
            "/admin/users/new",
            {
                "username": f"made_{s}",
                "email": "",
                "password": NEW_PASSWORD,
                "password_confirm": NEW_PASSWORD,
            },
        ),
        Check("admin users: user created", table=True),
        Goto(f"/admin/users/{BOB_ID}/roles"),
        Check("admin roles"),
        Submit(f"/admin/users/{BOB_ID}/roles"),
        Check("admin roles: saved"),
        Goto(f"/admin/users/{BOB_ID}/password"),
        Check("admin set password"),
        Submit(
            f"/admin/users/{BOB_ID}/password",
            {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD + "x"},
        ),
        Check("admin set password: passwords differ", status=400, has="form-error"),
        Goto("/admin/users/1/password"),
        Check("admin set password: not yourself", status=400, has="form-error"),
        Goto(f"/admin/users/{BOB_ID}/delete"),
        Check("admin delete user"),
        Goto(f"/admin/users/{BOB_ID}/mfa"),
        Check("admin second factors"),
        Goto("/admin/sessions"),
        Check("admin sessions", table=True),
        Goto("/admin/audit"),
        Check("admin audit log", table=True),
        Goto("/admin/users/999/roles"),
        Check("error 404 (signed in)", status=404),
    ]


def passkey_name(language: str) -> str:
    return f"pat-key-{suffix(language)}"


def passkeys(language: str) -> list[Step]:
    s = suffix(language)
    pat = f"pat_{s}"
    return [
        *sign_in(pat),
        Goto("/account/security"),
        AddPasskey(passkey_name(language)),
        Check("account security: a passkey added (its rename and remove forms)", has="passkeys"),
        Submit("/account/passkeys/*", {"name": passkey_name(language) + "-2"}),
        Check("account security: passkey renamed"),
        Goto("/reauth?next=/account/security"),
        Check("re-authentication with a passkey"),
        Submit("/logout"),
        *sign_in(pat),
        Check("login verify with a passkey (second step)", has="verify-title"),
    ]


def unverified_address(language: str) -> list[Step]:
    """With verification optional: signed in at once after signing up, the dashboard asks
    to verify the address and sends a new link; following it signed in."""
    s = suffix(language)
    name, address = f"newcomer_{s}", f"newcomer_{s}@example.com"
    return [
        Goto("/register"),
        Submit(
            "/register",
            {
                "username": name,
                "email": address,
                "password": PASSWORD,
                "password_confirm": PASSWORD,
            },
        ),
        Check("dashboard: address not verified", has="this-session"),
        Submit("/account/email/verify"),
        Check("dashboard: a new link sent", has="this-session"),
        MailLink(address, r"^/email/verify/"),
        Check("address confirmed (signed in)", has="confirmed-title"),
        Goto("/dashboard"),
        Check("dashboard: address verified", has="this-session"),
    ]


SCENARIOS: dict[str, Callable[[str], list[Step]]] = {
    "anonymous": anonymous_pages,
    "throttled": throttled_sign_in,
    "registration": registration,
    "account": account_pages,
    "second-factor": second_factor,
    "admin": admin_pages,
    "passkeys": passkeys,
    "unverified-address": unverified_address,
}
# Pages with a table (and the rest of the site) at 320 CSS px: signed in as alice.
NARROW_PAGES = (
    "/dashboard",
    "/account/sessions",
    "/admin/users",
    "/admin/sessions",
    "/admin/audit",
)
