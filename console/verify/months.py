"""`verify --mrr`, the source's side: MRR month by month and per currency, from the run's mapping.

The source is read through the run's mapping and normalisation; invoices stream grouped by customer,
so only one customer's history and one figure per month and currency are ever held (plus the plans,
which are few). A customer billing in several currencies is one history per currency (docs/mrr.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from console.verify.instants import Instant, Month, month_of, months_between, parse_instant
from console.verify.mrr import CustomerHistory, Invoice, MonthFigures, MonthTotals, Plan
from console.verify.source import CUSTOMER_ORDER, source_rows
from console.verify.target import Target


@dataclass
class SourceMonths:
    """The source's month figures per currency and the range GrowPanel is asked about."""

    by_currency: dict[str, MonthTotals] = field(default_factory=dict)
    first: Month | None = None
    last: Month | None = None
    ignored: int = 0

    @property
    def currencies(self) -> list[str]:
        """The currencies invoiced, sorted."""
        return sorted(self.by_currency)

    def months(self) -> list[Month]:
        """Every month of the range (none when the source has no invoice)."""
        if self.first is None or self.last is None:
            return []
        return months_between(self.first, self.last)

    def figures(self, month: Month, currency: str | None) -> MonthFigures:
        """One currency's figures of a month, or (currency None) the unconverted sum of every currency."""
        if currency is not None:
            totals = self.by_currency.get(currency)
            return totals.figures(month) if totals is not None else MonthFigures()
        out = MonthFigures()
        for totals in self.by_currency.values():
            for name, value in totals.figures(month).as_dict().items():
                setattr(out, name, getattr(out, name) + value)
        return out


def _plans(conn: psycopg.Connection[Any], target: Target) -> dict[str, Plan]:
    return {
        row.id: Plan.from_payload(row.payload)
        for row in source_rows(conn, "plans", target.mapping.queries["plans"], target.options)
        if row.id is not None and row.payload is not None and row.problem is None
    }


def customer_histories(
    conn: psycopg.Connection[Any], target: Target, on_row: Callable[[dict[str, Any] | None], None] = lambda _p: None
) -> Iterator[tuple[str, str, CustomerHistory]]:
    """(customer, currency, history) for every customer and currency of the invoices the importer sends."""
    plans = _plans(conn, target)
    customer: str | None = None
    buckets: dict[str, list[Invoice]] = defaultdict(list)
    for row in source_rows(conn, "invoices", target.mapping.queries["invoices"], target.options, CUSTOMER_ORDER):
        payload = row.payload if row.problem is None else None
        on_row(payload)
        if payload is None:
            continue
        if payload["customer_id"] != customer:
            if customer is not None:
                yield from _flush(customer, buckets, plans)
            customer, buckets = payload["customer_id"], defaultdict(list)
        invoice = Invoice.from_payload(payload)
        currency = str(payload.get("currency"))
        if invoice is not None:
            buckets[currency].append(invoice)
        else:
            buckets.setdefault(currency, [])
    if customer is not None:
        yield from _flush(customer, buckets, plans)


def _flush(customer: str, buckets: dict[str, list[Invoice]], plans: dict[str, Plan]) -> Iterator[tuple[str, str, CustomerHistory]]:
    for currency, invoices in buckets.items():
        yield customer, currency, CustomerHistory(invoices, plans)


def source_months(conn: psycopg.Connection[Any], target: Target) -> SourceMonths:
    """Compute the month figures per currency from every invoice the importer would send."""
    result = SourceMonths()
    span: list[Instant] = []

    def seen(payload: dict[str, Any] | None) -> None:
        if payload is None:
            result.ignored += 1
            return
        when = parse_instant(payload["date"])
        if when is not None:
            if not span:
                span[:] = [when, when]
            elif when < span[0]:
                span[0] = when
            elif when > span[1]:
                span[1] = when

    for _customer, currency, history in customer_histories(conn, target, seen):
        totals = result.by_currency.get(currency)
        if totals is None:
            totals = result.by_currency[currency] = MonthTotals()
        totals.add_customer(history)
    if span:
        result.first, result.last = month_of(span[0]), month_of(span[1])
    return result
