"""Readable device labels from User-Agent strings (ua-parser, the maintained
Browserscope/uap-core parser)."""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse

UNKNOWN = "Unknown device"
MAX_LENGTH = 512


def _product(user_agent: str) -> str:
    """The first word, printable characters only (no control or bidi characters)."""
    words = "".join(c if c.isprintable() else " " for c in user_agent).split()
    return words[0][:40] if words else ""


def describe(user_agent: str | None) -> str:
    """E.g. "Chrome 120 on Windows 10", "Mobile Safari 17 on iOS 17 (iPhone)"."""
    if not user_agent or not user_agent.strip():
        return UNKNOWN
    # Truncated before the cache, so it never holds more than 512 characters a key.
    return _describe(user_agent[:MAX_LENGTH])


@lru_cache(maxsize=2048)
def _describe(user_agent: str) -> str:
    result = parse(user_agent)
    browser = result.user_agent
    system = result.os
    parts: list[str] = []
    if browser and browser.family != "Other":
        parts.append(f"{browser.family} {browser.major}" if browser.major else browser.family)
    if system and system.family != "Other":
        version = f" {system.major}" if system.major else ""
        parts.append(("on " if parts else "") + f"{system.family}{version}")
    # Unparsed clients (scripts, libraries) still get a recognisable name: their product.
    label = " ".join(parts) or _product(user_agent) or UNKNOWN
    device = result.device
    if device and device.family not in ("Other", "Spider") and device.family not in label:
        label += f" ({device.family})"
    return label
