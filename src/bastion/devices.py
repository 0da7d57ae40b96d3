"""Readable device labels from User-Agent strings (ua-parser, the maintained
Browserscope/uap-core parser)."""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse

from bastion.i18n import gettext, lazy

UNKNOWN = lazy("Unknown device")
MAX_LENGTH = 512


def _product(user_agent: str) -> str:
    """The first word, printable characters only (no control or bidi characters)."""
    words = "".join(c if c.isprintable() else " " for c in user_agent).split()
    return words[0][:40] if words else ""


def describe(user_agent: str | None) -> str:
    """E.g. "Chrome 120 on Windows 10", "Mobile Safari 17 on iOS 17 (iPhone)", in the
    current language ("Windows 10 上的 Chrome 120")."""
    if not user_agent or not user_agent.strip():
        return str(UNKNOWN)
    # Truncated before the cache, so it never holds more than 512 characters a key.
    browser, system, device, product = _parts(user_agent[:MAX_LENGTH])
    if browser and system:
        label = gettext("%(browser)s on %(system)s", browser=browser, system=system)
    else:
        label = browser or system or product or str(UNKNOWN)
    if device:
        label = gettext("%(label)s (%(device)s)", label=label, device=device)
    return label


@lru_cache(maxsize=2048)
def _parts(user_agent: str) -> tuple[str, str, str, str]:
    """Browser, system, device and product names (the same in every language)."""
    result = parse(user_agent)
    browser_found = result.user_agent
    system_found = result.os
    browser = system = device = ""
    if browser_found and browser_found.family != "Other":
        family, major = browser_found.family, browser_found.major
        browser = f"{family} {major}" if major else family
    if system_found and system_found.family != "Other":
        version = f" {system_found.major}" if system_found.major else ""
        system = f"{system_found.family}{version}"
    # Unparsed clients (scripts, libraries) still get a recognisable name: their product.
    product = "" if browser or system else _product(user_agent)
    found = result.device
    shown = " ".join(p for p in (browser, system) if p) or product
    if found and found.family not in ("Other", "Spider") and found.family not in shown:
        device = found.family
    return browser, system, device, product
