"""Figures derived from a run: request rates from the sandbox's log, time to first request, machine load."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psutil


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class RequestStats:
    """The POSTs one data source received, as the sandbox logged them."""

    posts: int
    ok: int
    throttled: int
    first_arrival: float
    last_answer: float
    # Sum of request durations over the window: the mean number of requests in flight at the sandbox.
    busy_seconds: float = 0.0
    max_in_flight: int = 0

    @property
    def window(self) -> float:
        """From the first request's arrival to the last answer, in seconds."""
        return max(0.0, self.last_answer - self.first_arrival)

    @property
    def mean_in_flight(self) -> float:
        """Requests being served at once, on average over the window."""
        return self.busy_seconds / self.window if self.window else 0.0

    @property
    def ok_per_second(self) -> float:
        """Answered (HTTP 200) POSTs per second over the window."""
        return self.ok / self.window if self.window else 0.0


def request_stats(requests: list[dict[str, Any]]) -> RequestStats:
    """Counts and the time window of the POSTs in a sandbox request log."""
    posts = [r for r in requests if r["method"] == "POST"]
    if not posts:
        return RequestStats(0, 0, 0, 0.0, 0.0)
    arrivals = [_epoch(r["arrived_at"]) for r in posts]
    answers = [a + (r["duration_ms"] or 0) / 1000 for a, r in zip(arrivals, posts)]
    events = sorted([(a, 1) for a in arrivals] + [(b, -1) for b in answers])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return RequestStats(
        posts=len(posts),
        ok=sum(1 for r in posts if r["status"] == 200),
        throttled=sum(1 for r in posts if r["status"] == 429),
        first_arrival=min(arrivals),
        last_answer=max(answers),
        busy_seconds=sum(b - a for a, b in zip(arrivals, answers)),
        max_in_flight=peak,
    )


def first_post(requests: list[dict[str, Any]], entity: str) -> float | None:
    """When the first POST /data/<entity> arrived (epoch seconds), if any."""
    times = [_epoch(r["arrived_at"]) for r in requests if r["method"] == "POST" and r["path"] == f"/data/{entity}"]
    return min(times) if times else None


class MachineLoad:
    """How busy the whole machine was between `start()` and `stop()` (every process, not only ours)."""

    def __init__(self) -> None:
        self._before: Any = None
        self.busy = 0.0

    def start(self) -> None:
        """Take the starting reading."""
        self._before = psutil.cpu_times()

    def stop(self) -> float:
        """Fraction of all cores' time spent busy since `start()`."""
        after = psutil.cpu_times()
        before = self._before
        total = sum(after) - sum(before)
        idle = (after.idle - before.idle) + (getattr(after, "iowait", 0) - getattr(before, "iowait", 0))
        self.busy = (total - idle) / total if total else 0.0
        return self.busy


def timeline(requests: list[dict[str, Any]], cli_started: float, finished_at: float) -> str:
    """Where an importer run's wall time went, as the sandbox saw it: `start` to the first POST, each
    stage's window with its mean requests in flight, the gaps between stages, and the last answer to
    the run's end."""
    parts = []
    last = cli_started
    for entity in ("plans", "customers", "invoices"):
        posts = [r for r in requests if r["method"] == "POST" and r["path"] == f"/data/{entity}"]
        if not posts:
            continue
        stats = request_stats(posts)
        parts.append(f"+{stats.first_arrival - last:.2f} s gap")
        parts.append(f"{entity} {stats.window:.2f} s at {stats.mean_in_flight:.1f} in flight ({stats.posts} POSTs)")
        last = stats.last_answer
    parts.append(f"+{finished_at - last:.2f} s to the run's end")
    return ", ".join(parts)


def batch_waits(engine: Any, run_id: int, stage: str = "invoices") -> str:
    """Medians, from the state database, of where a stage's batches waited: queued to claimed (behind
    the queue), claimed to POST (the slot's preparation) and answered to the record's start."""
    import statistics

    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT extract(epoch FROM b.first_try_at - b.queued_at)::float8 AS queued,
                       extract(epoch FROM a.started_at - b.first_try_at)::float8 AS prepared,
                       (extract(epoch FROM b.finished_at - a.started_at) - a.latency_ms / 1000.0)::float8 AS recorded
                FROM batches b JOIN batch_attempts a ON a.batch_id = b.id
                WHERE b.run_id = :r AND b.stage = :s AND b.state = 'done'
                """
            ),
            {"r": run_id, "s": stage},
        ).all()
    if not rows:
        return f"no {stage} batches"

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.1f} ms"

    return (
        f"{stage} batches ({len(rows)}), medians: queued -> claimed {ms([r.queued for r in rows])}, "
        f"claimed -> POST {ms([r.prepared for r in rows])}, answered -> its record begins {ms([r.recorded for r in rows])}"
    )
