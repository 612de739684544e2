"""Wall-clock timestamps as ISO 8601 UTC strings, for JSON answers."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(timestamp: float) -> str:
    """A Unix timestamp as an ISO 8601 UTC string with milliseconds."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
