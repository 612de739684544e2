"""Which columns a mapping query may return for each entity, and which it must return.

The guide's fields, plus those the SDK's OpenAPI models add (`amount`, plan `external_id`, `product_name`).
"""

from __future__ import annotations

ENTITY_FIELDS: dict[str, tuple[str, ...]] = {
    "plans": ("id", "external_id", "name", "billing_freq", "billing_freq_count", "currency", "product_name"),
    "customers": (
        "id",
        "name",
        "email",
        "created_date",
        "country",
        "state",
        "trial_started",
        "custom_variables",
    ),
    "invoices": (
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
}

# Columns that must exist; a tuple means "at least one of these".
REQUIRED_COLUMNS: dict[str, tuple[str | tuple[str, ...], ...]] = {
    "plans": ("id", "name", "billing_freq", "currency"),
    "customers": ("id", ("name", "email"), "created_date", "country"),
    "invoices": (
        "id",
        "customer_id",
        "type",
        "date",
        ("amount_cents", "amount"),
        "currency",
        "start_date",
        "end_date",
    ),
}

DATE_FIELDS = frozenset({"created_date", "trial_started", "date", "start_date", "end_date", "payment_date"})
BILLING_FREQS = ("day", "week", "month", "year")
# The SDK's models also know these; the guide does not, so they are sent as months.
BILLING_FREQ_AS_MONTHS = {"quarter": 3, "half_year": 6}
INVOICE_TYPES = ("subscription", "one-time", "refund", "cancellation")
# Amounts travel as JSON numbers: above this they are not exact in every JSON reader.
MAX_JSON_INT = 2**53 - 1
# Ids key the audit table, whose btree index refuses keys past ~2,700 bytes: 512 characters of up to 4 bytes fit.
MAX_ID_LENGTH = 512
# custom_variables nested deeper than this are refused (our JSON writer, orjson, stops at 254 levels).
MAX_JSON_DEPTH = 100
