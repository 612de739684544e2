"""ISO 8601 instants compared exactly, and the UTC calendar months they fall in."""

from __future__ import annotations

import re
from datetime import date

_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?"
    r"\s*([Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
_EPOCH = date(1970, 1, 1).toordinal()

Instant = tuple[int, str]
"""Seconds since 1970-01-01T00:00:00Z, then the fraction's digits without trailing zeros.

Tuples compare like the instants: fraction digits without trailing zeros order like the decimals
they spell, so no precision is lost to a float or to datetime's microseconds.
"""
Month = tuple[int, int]
"""(year, month) of a UTC calendar month."""


def parse_instant(text: str) -> Instant | None:
    """The instant of an ISO 8601 date or date-time (no offset = UTC); None when it is not one."""
    match = _ISO.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH
    except ValueError:
        return None
    seconds = days * 86400
    if hour is not None:
        h, m, s = int(hour), int(minute), int(second or 0)
        if h > 23 or m > 59 or s > 60:
            return None
        seconds += h * 3600 + m * 60 + s
        if offset and offset not in ("Z", "z"):
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    return seconds, (fraction or "").rstrip("0")


def month_of(instant: Instant) -> Month:
    """The UTC month an instant falls in."""
    day = date.fromordinal(_EPOCH + instant[0] // 86400)
    return day.year, day.month


def month_start(month: Month) -> Instant:
    """The first instant of a month."""
    return (date(month[0], month[1], 1).toordinal() - _EPOCH) * 86400, ""


def next_month(month: Month) -> Month:
    """The month after."""
    return (month[0] + 1, 1) if month[1] == 12 else (month[0], month[1] + 1)


def previous_month(month: Month) -> Month:
    """The month before."""
    return (month[0] - 1, 12) if month[1] == 1 else (month[0], month[1] - 1)


def month_label(month: Month) -> str:
    """`YYYY-MM`, as GET /reports/mrr names its periods."""
    return f"{month[0]:04d}-{month[1]:02d}"


def months_between(first: Month, last: Month) -> list[Month]:
    """Every month from `first` to `last`, both included."""
    out = []
    current = first
    while current <= last:
        out.append(current)
        current = next_month(current)
    return out
