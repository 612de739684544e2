"""The MRR report's filters (`data_source`, `currency`, `customer`, `plan`) and `baseCurrency`.

They pick and convert the invoices the MRR rules then read; everything here happens before the
rules, so the rules themselves (customer_mrr.py) know nothing of filters or currencies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams

from sandbox.errors import ApiError
from sandbox.reports.fx import DEFAULT_BASE, check_rates, convert

Invoice = Mapping[str, Any]


def _words(raw: str | None) -> list[str]:
    """Space-separated values ("usd eur"), as the spec's OR filters take them."""
    return raw.split() if raw else []


@dataclass(frozen=True)
class MrrQuery:
    """What one `GET /reports/mrr` asks for beyond the range and interval."""

    base_currency: str
    data_sources: tuple[str, ...]
    """`data_source` values; a leading `~` excludes that data source."""
    currencies: frozenset[str]
    customer: str | None
    plans: frozenset[str]

    @classmethod
    def parse(cls, query: QueryParams) -> MrrQuery:
        """Read the parameters; a 400 ApiError for a malformed one."""
        base = query.get("baseCurrency") or DEFAULT_BASE
        if not base.isalpha() or not base.islower() or len(base) != 3:
            raise ApiError(400, f"baseCurrency must be a lowercase ISO 4217 code, got {base!r}")
        customer = query.get("customer") or None
        if customer is not None and len(customer.split()) != 1:
            raise ApiError(400, f"customer takes one customer id, got {customer!r}")
        return cls(
            base_currency=base,
            data_sources=tuple(_words(query.get("data_source"))),
            currencies=frozenset(_words(query.get("currency"))),
            customer=customer,
            plans=frozenset(_words(query.get("plan"))),
        )

    def includes_source(self, data_source: str) -> bool:
        """Whether the data_source filter keeps this data source."""
        wanted = [v for v in self.data_sources if not v.startswith("~")]
        excluded = {v[1:] for v in self.data_sources if v.startswith("~")}
        return (not wanted or data_source in wanted) and data_source not in excluded

    def select(self, invoices: Iterable[Invoice], data_source: str) -> list[Invoice]:
        """The invoices the filters keep, amounts converted to the base currency."""
        if not self.includes_source(data_source):
            return []
        kept = [
            invoice
            for invoice in invoices
            if (not self.currencies or invoice.get("currency") in self.currencies)
            and (self.customer is None or invoice["customer_id"] == self.customer)
        ]
        if self.plans:
            kept = self._on_plans(kept)
        check_rates({invoice["currency"] for invoice in kept if "currency" in invoice}, self.base_currency)
        return [self._converted(invoice) for invoice in kept]

    def _on_plans(self, invoices: list[Invoice]) -> list[Invoice]:
        """Customers with a subscription on one of the plans; of them, the invoices of those plans
        and their plan-less ones (cancellations, refunds without plan_id), which act on them."""
        customers = {
            invoice["customer_id"]
            for invoice in invoices
            if invoice["type"] == "subscription" and invoice.get("plan_id") in self.plans
        }
        return [
            invoice
            for invoice in invoices
            if invoice["customer_id"] in customers
            and (invoice.get("plan_id") is None or invoice["plan_id"] in self.plans)
        ]

    def _converted(self, invoice: Invoice) -> Invoice:
        """The invoice with amount_cents in the base currency (itself when no FX is needed)."""
        currency = invoice.get("currency", self.base_currency)
        if currency == self.base_currency:
            return invoice
        return {**invoice, "amount_cents": convert(invoice["amount_cents"], currency, self.base_currency)}
