"""Dates, times and durations for people, in the current language and time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from babel.dates import format_date, format_time

from bastion.i18n.catalogue import gettext_locale
from bastion.i18n.context import current_language, current_utc_offset, ngettext

# The most a real zone is away from UTC (UTC-12 .. UTC+14), in minutes.
MAX_UTC_OFFSET = 14 * 60


def parse_utc_offset(value: str | None) -> int | None:
    """Minutes east of UTC from the ``bastion_tz`` cookie, or None if it is not one."""
    if not value or len(value) > 5:
        return None
    try:
        minutes = int(value)
    except ValueError:
        return None
    return minutes if -MAX_UTC_OFFSET <= minutes <= MAX_UTC_OFFSET else None


def zone_label(offset: int | None) -> str:
    """``UTC``, ``UTC+08:00``, ``UTC-05:30``."""
    if not offset:
        return "UTC"
    sign = "+" if offset > 0 else "-"
    hours, minutes = divmod(abs(offset), 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def format_when(timestamp: float | None) -> str:
    """A moment as this request's reader writes it, in their zone (the browser's offset,
    else UTC), always with the zone: ``Dec 3, 2026, 6:38 PM UTC`` /
    ``2026年12月3日 18:38 UTC+08:00``."""
    if timestamp is None:
        return "-"
    offset = current_utc_offset()
    zone = timezone(timedelta(minutes=offset)) if offset else UTC
    moment = datetime.fromtimestamp(timestamp, tz=zone)
    locale = gettext_locale(current_language())
    date = format_date(moment, format="medium", locale=locale)
    time = format_time(moment, format="short", locale=locale)
    return f"{date} {time} {zone_label(offset)}"


_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60))


def format_duration(seconds: int) -> str:
    """Seconds in words, in the largest unit that divides them: "14 days", "14 天"."""
    for name, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return in_unit(name, seconds // size)
    return in_unit("second", seconds)


def in_unit(name: str, count: int) -> str:
    """``count`` of a unit ("second", "minute", "hour", "day") in words."""
    if name == "second":
        return ngettext("%(num)d second", "%(num)d seconds", count)
    if name == "day":
        return ngettext("%(num)d day", "%(num)d days", count)
    if name == "hour":
        return ngettext("%(num)d hour", "%(num)d hours", count)
    return ngettext("%(num)d minute", "%(num)d minutes", count)
