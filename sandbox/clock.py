"""Wall-clock timestamps as ISO 8601 UTC strings, for JSON answers."""

from __future__ import annotations

from datetime import UTC, date, datetime


def iso(timestamp: float) -> str:
    """A Unix timestamp as an ISO 8601 UTC string with milliseconds."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def today() -> date:
    """Today's UTC date (the MRR report's default range ends here; tests replace this function)."""
    return datetime.now(UTC).date()
