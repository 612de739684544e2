"""One spec per entity: everything the stages need to know about plans, customers and invoices.

The mapping check reads the fields and required columns, the row builder the converters, required
values and finishing rule, the stage query and the packer the grouping and order, the worker the
parents (an invoice is skipped when its customer or plan was rejected in the run), and `verify` the
comparison rules. A new entity, or a new field, is one edit here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.states import STAGES
from producers import converters as c
from producers.fields import BILLING_FREQ_AS_MONTHS, INVOICE_TYPES, MAX_JSON_INT

Problems = list[str] | None


@dataclass(frozen=True, slots=True)
class PayloadOptions:
    """Payload names where the guide and the SDK disagree."""

    data_source: str
    invoice_amount_field: str = "amount_cents"
    plan_send_external_id: bool = False


def _has_problem(problems: Problems, *fields: str) -> bool:
    return bool(problems) and any(p.startswith(tuple(f + " " for f in fields)) for p in problems)  # type: ignore[union-attr]


def _finish_plan(out: dict[str, Any], problems: Problems, options: PayloadOptions) -> Problems:
    months = BILLING_FREQ_AS_MONTHS.get(out.get("billing_freq", ""))
    if months:
        out["billing_freq"] = "month"
        count = months * out.get("billing_freq_count", 1)
        if count > MAX_JSON_INT:
            problems = (problems or []) + [f"billing_freq_count is too large once counted in months, got {count}"]
        out["billing_freq_count"] = count
    if options.plan_send_external_id and "id" in out and "external_id" not in out:
        out["external_id"] = out["id"]
    return problems


def _finish_customer(out: dict[str, Any], problems: Problems, options: PayloadOptions) -> Problems:
    if out.get("state") == "":
        # A state of spaces only: empty once trimmed, so absent like an empty string.
        del out["state"]
    # A name or email that is there but wrong has its own message already.
    if "name" not in out and "email" not in out and not _has_problem(problems, "name", "email"):
        problems = (problems or []) + ["name or email is required"]
    return problems


def _finish_invoice(out: dict[str, Any], problems: Problems, options: PayloadOptions) -> Problems:
    alias = out.pop("amount", None)
    if alias is not None and "amount_cents" in out and alias != out["amount_cents"]:
        # Both columns given: they must agree, or we would silently send one of them.
        problems = (problems or []) + [f"amount ({alias}) and amount_cents ({out['amount_cents']}) differ"]
    if out.get("type") == "subscription" and "plan_id" not in out and not _has_problem(problems, "plan_id"):
        problems = (problems or []) + ["plan_id is required when type is subscription"]
    name = options.invoice_amount_field
    if name != "amount_cents" and "amount_cents" in out:
        if name == "amount":
            out["amount"] = out.pop("amount_cents")
        else:
            out["amount"] = out["amount_cents"]
    return problems


@dataclass(frozen=True)
class EntitySpec:
    """The rules of one entity, read by every stage."""

    name: str
    singular: str
    # Every column a mapping query may return, in the order messages list them.
    fields: tuple[str, ...]
    # Columns the query must return; a tuple means "at least one of these".
    required_columns: tuple[str | tuple[str, ...], ...]
    # Values each row must have (after the `amount` alias is folded into `amount_cents`).
    required_values: tuple[str, ...]
    # field -> converter; date fields are not here (their converter depends on the column's type).
    converters: Mapping[str, Callable[[Any], Any]]
    date_fields: frozenset[str]
    # Per-entity rules once every field is converted: may change the payload, returns the problems.
    finish: Callable[[dict[str, Any], Problems, PayloadOptions], Problems]
    # Rows of one value of this column travel together (one batch, or a chain of batches in order).
    group_by: str | None = None
    # Within a group, the order rows are sent in (the normalised instant of this date field, then id).
    order_by: str | None = None
    # (column, entity): a row is skipped when the row it refers to was rejected earlier in the run.
    parents: tuple[tuple[str, str], ...] = ()
    # verify: documented defaults of optional fields, and a payload alias folded into its field.
    compare_defaults: Mapping[str, Any] = field(default_factory=dict)
    alias: tuple[str, str] | None = None

    @property
    def order_columns(self) -> tuple[str, ...]:
        """The columns the producer's stage query groups and sorts by."""
        return tuple(x for x in ("id", self.group_by, self.order_by) if x is not None)

    def converter(self, name: str, pg_type: str) -> Callable[[Any], Any]:
        """The converter of one column, given the Postgres type name of the query's result column."""
        if name in self.date_fields:
            return c.trusted_instant if pg_type in c.PG_DATE_TYPES else c.parsed_instant
        return self.converters[name]


_ID = c.id_value

PLANS = EntitySpec(
    name="plans",
    singular="plan",
    fields=("id", "external_id", "name", "billing_freq", "billing_freq_count", "currency", "product_name"),
    required_columns=("id", "name", "billing_freq", "currency"),
    required_values=("id", "name", "billing_freq", "currency"),
    converters={
        "id": _ID,
        "external_id": _ID,
        "name": c.plain_text,
        "billing_freq": c.billing_freq,
        "billing_freq_count": c.positive,
        "currency": c.currency_code,
        "product_name": c.plain_text,
    },
    date_fields=frozenset(),
    finish=_finish_plan,
    compare_defaults={"billing_freq_count": 1},
)

CUSTOMERS = EntitySpec(
    name="customers",
    singular="customer",
    fields=("id", "name", "email", "created_date", "country", "state", "trial_started", "custom_variables"),
    required_columns=("id", ("name", "email"), "created_date", "country"),
    required_values=("id", "created_date", "country"),
    converters={
        "id": _ID,
        "name": c.plain_text,
        "email": c.plain_text,
        "country": c.country_code,
        "state": c.state_code,
        "custom_variables": c.json_object,
    },
    date_fields=frozenset({"created_date", "trial_started"}),
    finish=_finish_customer,
)

INVOICES = EntitySpec(
    name="invoices",
    singular="invoice",
    fields=(
        "id",
        "customer_id",
        "plan_id",
        "type",
        "date",
        "amount_cents",
        "amount",
        "currency",
        "start_date",
        "end_date",
        "payment_date",
        "quantity",
        "proration",
        "discount",
    ),
    required_columns=(
        "id",
        "customer_id",
        "type",
        "date",
        ("amount_cents", "amount"),
        "currency",
        "start_date",
        "end_date",
    ),
    required_values=("id", "customer_id", "type", "date", "amount_cents", "currency", "start_date", "end_date"),
    converters={
        "id": _ID,
        "customer_id": _ID,
        "plan_id": _ID,
        "type": c.one_of(INVOICE_TYPES),
        "amount_cents": c.non_negative,
        "amount": c.non_negative,
        "currency": c.currency_code,
        "quantity": c.positive,
        "proration": c.boolean,
        "discount": c.non_negative,
    },
    date_fields=frozenset({"date", "start_date", "end_date", "payment_date"}),
    finish=_finish_invoice,
    group_by="customer_id",
    order_by="date",
    parents=(("customer_id", "customers"), ("plan_id", "plans")),
    compare_defaults={"quantity": 1},
    alias=("amount", "amount_cents"),
)

ENTITIES: dict[str, EntitySpec] = {spec.name: spec for spec in (PLANS, CUSTOMERS, INVOICES)}
assert tuple(ENTITIES) == STAGES, "entities are produced in stage order"
DATE_FIELDS = frozenset().union(*(spec.date_fields for spec in ENTITIES.values()))
