"""Report periods of every interval (day, week, month, quarter, year) as consecutive integers.

A period index counts periods since a fixed origin, so consecutive periods are consecutive
integers and the MRR rules of docs/mrr.md, written for months, read "month" as "period" for the
other intervals (`month` itself is exactly sandbox.reports.months).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from sandbox.dates import Instant
from sandbox.errors import ApiError
from sandbox.reports.months import parse_range_days

_EPOCH = date(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH.toordinal()
# 1970-01-01 was a Thursday: weeks (ISO, Monday first) are counted from Monday 1969-12-29.
_WEEK_SHIFT = 3


@dataclass(frozen=True)
class Interval:
    """One report interval: how a day maps to its period and where a period starts."""

    name: str
    of_day: Callable[[int], int]
    """Period index of a day counted from 1970-01-01."""
    first_day: Callable[[int], date]
    """The first calendar day of a period."""

    def of_instant(self, instant: Instant) -> int:
        """The UTC period an instant falls in (periods start on whole seconds)."""
        return self.of_day(instant[0] // 86400)

    def of_date(self, day: date) -> int:
        """The period a calendar day falls in."""
        return self.of_day(day.toordinal() - _EPOCH_ORDINAL)

    def last_day(self, index: int) -> date:
        """The inclusive last calendar day of a period."""
        return self.first_day(index + 1) - timedelta(days=1)


@lru_cache(maxsize=65_536)
def _month_of_day(days: int) -> int:
    day = date.fromordinal(days + _EPOCH_ORDINAL)
    return day.year * 12 + day.month - 1


def _month_start(index: int) -> date:
    year, month = divmod(index, 12)
    return date(year, month + 1, 1)


INTERVALS: dict[str, Interval] = {
    "day": Interval("day", lambda days: days, lambda i: _EPOCH + timedelta(days=i)),
    "week": Interval(
        "week",
        lambda days: (days + _WEEK_SHIFT) // 7,
        lambda i: _EPOCH + timedelta(days=7 * i - _WEEK_SHIFT),
    ),
    "month": Interval("month", _month_of_day, _month_start),
    "quarter": Interval("quarter", lambda days: _month_of_day(days) // 3, lambda i: _month_start(3 * i)),
    "year": Interval("year", lambda days: _month_of_day(days) // 12, lambda i: date(i, 1, 1)),
}


def interval_named(raw: str | None) -> Interval:
    """The interval of a query parameter (month when absent); a 400 ApiError for anything else."""
    if raw is None or raw == "":
        return INTERVALS["month"]
    interval = INTERVALS.get(raw)
    if interval is None:
        raise ApiError(400, f"interval must be one of {', '.join(INTERVALS)}, got {raw!r}")
    return interval


def period_range(raw: str | None, interval: Interval, today: date) -> tuple[int, int]:
    """The first and last period a `date=YYYYMMDD-YYYYMMDD` range touches.

    Absent: the last 12 months as the spec says, i.e. from the first day of the month eleven
    months before today's (UTC) to today.
    """
    if raw is None:
        month = today.year * 12 + today.month - 1 - 11
        first, last = _month_start(month), today
    else:
        first, last = parse_range_days(raw)
    return interval.of_date(first), interval.of_date(last)
