"""Import progress per data source, as `GET /data/data-sources/{id}/progress` reports it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sandbox.clock import iso


@dataclass
class _SourceProgress:
    """Counters and activity times of one data source since its last reset."""

    enqueued: int = 0
    processed: int = 0
    failed: int = 0
    started_at: float | None = None
    last_activity_at: float | None = None
    last_activity_monotonic: float = 0.0


# The SDK's model (GetDataDataSourcesIdProgressResponse200.from_dict) reads camelCase counters; the
# sandbox first served snake_case, kept as the "legacy" wire so importers can be tested on both.
_SDK_NAMES = ("phase", "enqueuedCount", "processedCount", "failedCount", "startedAt", "lastActivityAt")
_LEGACY_NAMES = ("phase", "enqueued_count", "processed_count", "failed_count", "started_at", "last_activity_at")


class ProgressBoard:
    """Counts rows per data source and derives the idle/processing/done phase."""

    def __init__(self, delay: float) -> None:
        """`delay`: seconds a data source stays `processing` after its last stored batch."""
        self.delay = delay
        self._sources: dict[str, _SourceProgress] = {}

    def record(self, data_source: str, stored: int, failed: int) -> None:
        """Account for one answered batch: `stored` rows accepted, `failed` rows errored."""
        progress = self._sources.get(data_source)
        if progress is None:
            progress = self._sources[data_source] = _SourceProgress()
        progress.enqueued += stored + failed
        progress.processed += stored
        progress.failed += failed
        if stored:
            now = time.time()
            if progress.started_at is None:
                progress.started_at = now
            progress.last_activity_at = now
            progress.last_activity_monotonic = time.monotonic()

    def snapshot(self, data_source: str, shape: str = "sdk") -> dict[str, Any]:
        """The progress answer for one data source: SDK wire names (camelCase), or "legacy" snake_case."""
        progress = self._sources.get(data_source) or _SourceProgress()
        if progress.last_activity_at is None:
            phase = "idle"
        elif time.monotonic() - progress.last_activity_monotonic < self.delay:
            phase = "processing"
        else:
            phase = "done"
        values = (
            phase,
            progress.enqueued,
            progress.processed,
            progress.failed,
            iso(progress.started_at) if progress.started_at is not None else None,
            iso(progress.last_activity_at) if progress.last_activity_at is not None else None,
        )
        return dict(zip(_LEGACY_NAMES if shape == "legacy" else _SDK_NAMES, values, strict=True))

    def drop(self, data_source: str) -> None:
        """Forget one data source's progress."""
        self._sources.pop(data_source, None)

    def clear(self) -> None:
        """Forget everything."""
        self._sources.clear()
