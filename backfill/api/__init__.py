"""Everything the importer says to GrowPanel and how it reads the answers.

    client    GrowPanelClient: every endpoint, bounded answers, capped Retry-After
    classify  the one classifier of answers (status and body -> value or ApiError)
    answers   typed read answers (progress, listings, MRR report, reset), tolerant of old and SDK shapes
    redact    the one redaction of the key (every encoding) and of database URL passwords
"""

from backfill.api.answers import ListingPage, MrrQuery, MrrReport, Progress, ResetResult, UnexpectedAnswer
from backfill.api.classify import BODY_LIMIT, backoff_delay, body_text, classify, json_body, parse_retry_after
from backfill.api.client import MAX_RESPONSE_BYTES, MAX_RETRY_AFTER, Exchange, GrowPanelClient
from backfill.redact import RedactingFilter, install_log_redaction, redact, truncate
from backfill.errors import ApiError

__all__ = [
    "BODY_LIMIT",
    "MAX_RESPONSE_BYTES",
    "MAX_RETRY_AFTER",
    "ApiError",
    "Exchange",
    "GrowPanelClient",
    "ListingPage",
    "MrrQuery",
    "MrrReport",
    "Progress",
    "RedactingFilter",
    "ResetResult",
    "UnexpectedAnswer",
    "backoff_delay",
    "body_text",
    "classify",
    "json_body",
    "install_log_redaction",
    "parse_retry_after",
    "redact",
    "truncate",
]
