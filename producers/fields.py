"""The limits and vocabularies of field values (which entity has which field: `producers.entities`).

The guide's values, plus those the SDK's OpenAPI models add.
"""

from __future__ import annotations

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
