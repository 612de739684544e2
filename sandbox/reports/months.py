"""Calendar months as integers (year × 12 + month − 1), and the report's `date=` range."""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

from sandbox.dates import Instant
from sandbox.errors import ApiError

Month = int
"""A UTC calendar month: year × 12 + (month − 1), so consecutive months are consecutive integers."""

_UNIX_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_RANGE_RE = re.compile(r"([0-9]{8})-([0-9]{8})")


def month_of(instant: Instant) -> Month:
    """The UTC month an instant falls in (months start on whole seconds: the fraction never matters)."""
    return _month_of_day(instant[0] // 86400)


@lru_cache(maxsize=65_536)
def _month_of_day(days: int) -> Month:
    """The month of a day counted from 1970-01-01 (invoices repeat the same days a lot)."""
    day = date.fromordinal(days + _UNIX_EPOCH_ORDINAL)
    return day.year * 12 + day.month - 1


def period(month: Month) -> str:
    """The `YYYY-MM` label of a month."""
    year, index = divmod(month, 12)
    return f"{year:04d}-{index + 1:02d}"


def parse_range(raw: str) -> tuple[Month, Month]:
    """The first and last month of a `YYYYMMDD-YYYYMMDD` value; raises a 400 ApiError otherwise."""
    first, last = parse_range_days(raw)
    return first.year * 12 + first.month - 1, last.year * 12 + last.month - 1


def parse_range_days(raw: str) -> tuple[date, date]:
    """The first and last day of a `YYYYMMDD-YYYYMMDD` value; raises a 400 ApiError otherwise."""
    match = _RANGE_RE.fullmatch(raw)
    if match is None:
        raise ApiError(400, f"date must be YYYYMMDD-YYYYMMDD, got {raw!r}")
    first, last = (_day(text, raw) for text in match.groups())
    if first > last:
        raise ApiError(400, f"date range ends before it starts: {raw!r}")
    return first, last


def _day(text: str, raw: str) -> date:
    """One YYYYMMDD half of the range as a real calendar date."""
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise ApiError(400, f"date has an impossible calendar day {text!r} in {raw!r}") from None
