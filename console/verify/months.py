"""`verify --mrr`: the source's MRR month by month beside GrowPanel's `GET /reports/mrr`.

The source is read through the run's mapping and normalisation; invoices stream grouped by customer,
so only one customer's history and one figure per month are ever held (plus the plans, which are few).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg

from console.verify.errors import CheckIncomplete
from console.verify.instants import Instant, Month, month_label, month_of, months_between, parse_instant
from console.verify.mrr import CustomerHistory, Invoice, MonthTotals, Plan
from console.verify.remote import RemoteApi
from console.verify.report import MonthLine
from console.verify.source import CUSTOMER_ORDER, source_rows
from console.verify.target import Target


@dataclass
class SourceMonths:
    """The source's month figures and the range GrowPanel is asked about."""

    totals: MonthTotals
    first: Month | None
    last: Month | None
    currencies: set[str] = field(default_factory=set)
    ignored: int = 0

    def months(self) -> list[Month]:
        """Every month of the range (none when the source has no invoice)."""
        if self.first is None or self.last is None:
            return []
        return months_between(self.first, self.last)


def source_months(conn: psycopg.Connection[Any], target: Target) -> SourceMonths:
    """Compute the month figures from every invoice the importer would send."""
    plans = {
        row.id: Plan.from_payload(row.payload)
        for row in source_rows(conn, "plans", target.mapping.queries["plans"], target.options)
        if row.id is not None and row.payload is not None and row.problem is None
    }
    totals = MonthTotals()
    result = SourceMonths(totals, None, None)
    earliest: Instant | None = None
    latest: Instant | None = None
    customer: str | None = None
    bucket: list[Invoice] = []
    for row in source_rows(conn, "invoices", target.mapping.queries["invoices"], target.options, CUSTOMER_ORDER):
        payload = row.payload
        if payload is None or row.problem is not None:
            result.ignored += 1
            continue
        when = parse_instant(payload["date"])
        if when is not None:
            earliest = when if earliest is None or when < earliest else earliest
            latest = when if latest is None or when > latest else latest
        result.currencies.add(str(payload.get("currency")))
        if payload["customer_id"] != customer:
            if bucket:
                totals.add_customer(CustomerHistory(bucket, plans))
            customer, bucket = payload["customer_id"], []
        invoice = Invoice.from_payload(payload)
        if invoice is not None:
            bucket.append(invoice)
    if bucket:
        totals.add_customer(CustomerHistory(bucket, plans))
    if earliest is not None and latest is not None:
        result.first, result.last = month_of(earliest), month_of(latest)
    return result


def growpanel_months(api: RemoteApi, data_source: str, first: Month, last: Month) -> dict[str, dict[str, int]]:
    """GET /reports/mrr for the range, by period, this data source's entries only."""
    end = date(last[0] + last[1] // 12, last[1] % 12 + 1, 1).toordinal() - 1
    body = api.get_json(
        "/reports/mrr",
        {
            "date": f"{first[0]:04d}{first[1]:02d}01-{date.fromordinal(end).strftime('%Y%m%d')}",
            "interval": "month",
            "breakdown": "data_source",
        },
    )
    result = body.get("result") if isinstance(body, dict) else None
    data = result.get("data") if isinstance(result, dict) else None
    if not isinstance(data, list):
        raise CheckIncomplete("GET /reports/mrr answered without a `result.data` list")
    out: dict[str, dict[str, int]] = {}
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("period"), str):
            raise CheckIncomplete("GET /reports/mrr answered an entry without a `period`")
        if entry.get("data_source") not in (None, data_source):
            continue
        out[entry["period"][:7]] = {k: v for k, v in entry.items() if isinstance(v, int) and not isinstance(v, bool)}
    return out


def month_lines(source: SourceMonths, growpanel: dict[str, dict[str, int]], tolerance_percent: float) -> list[MonthLine]:
    """Side by side, month by month, flagging a total MRR that differs by more than the tolerance."""
    lines = []
    for month in source.months():
        period = month_label(month)
        mine = source.totals.figures(month).as_dict()
        theirs = growpanel.get(period)
        their_total = theirs.get("total_mrr", 0) if theirs is not None else 0
        difference = their_total - mine["total_mrr"]
        percent = difference * 100.0 / mine["total_mrr"] if mine["total_mrr"] else (0.0 if difference == 0 else None)
        flagged = abs(difference) * 100 > tolerance_percent * abs(mine["total_mrr"])
        lines.append(MonthLine(period, mine, theirs, difference, None if percent is None else round(percent, 4), flagged))
    return lines
