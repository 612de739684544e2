"""ISO 8601 date and date-time checking, and the instant a valid value stands for."""

from __future__ import annotations

import re
from datetime import date

# A regex plus range checks rather than datetime.fromisoformat, which is faster (0.45 us against
# 2.5 us measured) but too lenient: it also takes "2024-01-01 10:00", "20240101", week dates and
# "+0100" offsets. The memo below makes the cost moot (0.09 us a hit). [0-9] rather than \d,
# which would also match non-ASCII digits.
_ISO_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?"
)
Instant = tuple[int, str]
"""Seconds since 1970-01-01T00:00:00Z, then the fraction's digits without trailing zeros.

Comparing the tuples compares the instants exactly: digit strings without trailing zeros
order like the decimal fractions they spell.
"""

_UNIX_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Imports repeat the same dates a lot (monthly periods), so results are memoised; the cache is
# dropped whole when it grows past this many entries, which keeps memory bounded without an LRU.
_CACHE_LIMIT = 200_000
_cache: dict[str, Instant | None] = {}


def parse_instant(value: str) -> Instant | None:
    """Return the instant of a valid ISO 8601 date or date-time string, or None when invalid."""
    try:
        return _cache[value]
    except KeyError:
        pass
    result = _parse(value)
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[value] = result
    return result


def _parse(value: str) -> Instant | None:
    """Check the syntax and calendar ranges of one value; None when it is not a valid date."""
    match = _ISO_RE.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        # date() checks year 1..9999, month 1..12 and the day against the month (leap years too).
        days = date(int(year), int(month), int(day)).toordinal() - _UNIX_EPOCH_ORDINAL
    except ValueError:
        return None
    seconds = days * 86400
    if hour is not None:
        h, m, s = int(hour), int(minute), int(second or 0)
        if h > 23 or m > 59 or s > 59:
            return None
        seconds += h * 3600 + m * 60 + s
        if offset is not None and offset != "Z":
            oh, om = int(offset[1:3]), int(offset[4:6])
            if oh > 23 or om > 59:
                return None
            shift = oh * 3600 + om * 60
            # Local time = UTC + offset, so UTC = local - offset.
            seconds += -shift if offset[0] == "+" else shift
    return seconds, (fraction or "").rstrip("0")
