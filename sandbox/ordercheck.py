"""The chronological-order check: invoices first stored after a later-dated one of their customer."""

from __future__ import annotations

import time
from typing import Any

from sandbox.clock import iso
from sandbox.dates import Instant


class _CustomerTimeline:
    """The stored invoice dates of one customer and the latest of them."""

    __slots__ = ("dates", "latest")

    def __init__(self) -> None:
        """Start with no invoice."""
        self.dates: dict[str, tuple[Instant, str]] = {}
        self.latest: tuple[Instant, str, str] | None = None
        """(instant, invoice id, date as sent) of the latest-dated stored invoice."""

    def add(self, invoice_id: str, instant: Instant, date: str) -> None:
        """Record (or move) one invoice's date."""
        self.dates[invoice_id] = (instant, date)
        latest = self.latest
        if latest is None or instant > latest[0]:
            self.latest = (instant, invoice_id, date)
        elif latest[1] == invoice_id:
            # The holder of the latest date moved earlier: someone else may now be latest.
            self._recompute()

    def remove(self, invoice_id: str) -> None:
        """Forget one invoice (it moved to another customer)."""
        self.dates.pop(invoice_id, None)
        if self.latest is not None and self.latest[1] == invoice_id:
            self._recompute()

    def _recompute(self) -> None:
        """Find the latest date again, O(invoices of this customer)."""
        if not self.dates:
            self.latest = None
            return
        invoice_id, (instant, date) = max(self.dates.items(), key=lambda item: item[1][0])
        self.latest = (instant, invoice_id, date)


class _SourceTimelines:
    """The timelines of one data source's customers."""

    __slots__ = ("customers", "invoice_customer")

    def __init__(self) -> None:
        """Start empty."""
        self.customers: dict[str, _CustomerTimeline] = {}
        self.invoice_customer: dict[str, str] = {}


class OrderCheck:
    """Tracks stored invoice dates per customer and records out-of-order arrivals."""

    def __init__(self) -> None:
        """Start with nothing stored and no violation."""
        self._sources: dict[str, _SourceTimelines] = {}
        self.violations: list[dict[str, Any]] = []

    def record(
        self,
        data_source: str,
        status: str,
        invoice_id: str,
        customer_id: str,
        instant: Instant,
        date: str,
    ) -> None:
        """Account for one stored invoice; only an `inserted` one can be a violation."""
        if status == "unchanged":
            return
        source = self._sources.get(data_source)
        if source is None:
            source = self._sources[data_source] = _SourceTimelines()
        timeline = source.customers.get(customer_id)
        if timeline is None:
            timeline = source.customers[customer_id] = _CustomerTimeline()
        if status == "inserted":
            latest = timeline.latest
            if latest is not None and instant < latest[0]:
                self.violations.append(
                    {
                        "data_source": data_source,
                        "customer_id": customer_id,
                        "invoice_id": invoice_id,
                        "date": date,
                        "later_invoice_id": latest[1],
                        "later_invoice_date": latest[2],
                        "detected_at": iso(time.time()),
                    }
                )
        else:
            # An update may have moved the invoice to another customer.
            previous = source.invoice_customer.get(invoice_id)
            if previous is not None and previous != customer_id:
                source.customers[previous].remove(invoice_id)
        source.invoice_customer[invoice_id] = customer_id
        timeline.add(invoice_id, instant, date)

    def drop(self, data_source: str) -> None:
        """Forget one data source's timelines and violations."""
        self._sources.pop(data_source, None)
        self.violations = [v for v in self.violations if v["data_source"] != data_source]

    def clear(self) -> None:
        """Forget everything."""
        self._sources.clear()
        self.violations.clear()
