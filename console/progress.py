"""Live progress for `start --wait` and `status --watch`: bars on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from console.status import outcome_line
from models.states import RUN_FINAL_STATES, STAGES, RunState

__all__ = ["outcome_line", "watch"]

FINAL_STATES = (*RUN_FINAL_STATES, RunState.PAUSED)


def _done(stage: dict[str, Any]) -> int:
    return int(stage["rows"] - stage["pending"])


class _Rate:
    """Rows per second over the last ~10 s, and an ETA."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()

    def update(self, done: int) -> float:
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 10:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        return (done - d0) / (now - t0) if now > t0 else 0.0


def _eta(left: int, rate: float) -> str:
    if left <= 0:
        return "0:00:00"
    if rate <= 0:
        return "--:--:--"
    seconds = int(left / rate)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def watch(fetch: Callable[[], dict[str, Any]], interval: float = 0.25, stream: TextIO | None = None, until_final: bool = True) -> dict[str, Any]:
    """Poll `fetch` (a status document) and show it until the run reaches a final or paused state."""
    stream = stream or sys.stderr
    if stream.isatty():
        return _watch_bars(fetch, interval, stream, until_final)
    return _watch_lines(fetch, interval, stream, until_final)


def _watch_bars(fetch: Callable[[], dict[str, Any]], interval: float, stream: TextIO, until_final: bool) -> dict[str, Any]:
    console = Console(file=stream)
    rates = {stage: _Rate() for stage in STAGES}
    columns = (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9} rows/s  ETA {task.fields[eta]}  {task.fields[state]}"),
    )
    progress = Progress(*columns, console=console)
    counts = Text("")
    with Live(Group(progress, counts), console=console, refresh_per_second=8):
        tasks = {stage: progress.add_task(stage, total=None, rate="0", eta="--:--:--", state="waiting") for stage in STAGES}
        while True:
            doc = fetch()
            for stage in STAGES:
                s = doc["stages"][stage]
                done = _done(s)
                rate = rates[stage].update(done)
                total = s["rows"] if s.get("produced") else None
                progress.update(
                    tasks[stage],
                    completed=done,
                    total=total,
                    rate=f"{rate:,.0f}",
                    eta=_eta(s["rows"] - done, rate) if s["state"] != "done" else "0:00:00",
                    state=s["state"],
                )
            counts.plain = outcome_line(doc)
            if not until_final or doc["state"] in FINAL_STATES:
                return doc
            time.sleep(interval)


def _watch_lines(
    fetch: Callable[[], dict[str, Any]], interval: float, stream: TextIO, until_final: bool, every: float = 5.0
) -> dict[str, Any]:
    # Polled as often as on a terminal (so the end is noticed at once), printed every few seconds.
    rates = {stage: _Rate() for stage in STAGES}
    printed = -every
    while True:
        doc = fetch()
        final = not until_final or doc["state"] in FINAL_STATES
        if time.monotonic() - printed < every and not final:
            for stage in STAGES:
                rates[stage].update(_done(doc["stages"][stage]))
            time.sleep(interval)
            continue
        printed = time.monotonic()
        parts = []
        for stage in STAGES:
            s = doc["stages"][stage]
            done = _done(s)
            rate = rates[stage].update(done)
            parts.append(
                f"{stage} {done}/{s['rows']} {s['state']}"
                + (f" {rate:,.0f} rows/s ETA {_eta(s['rows'] - done, rate)}" if s["state"] == "running" else "")
            )
        print(" | ".join(parts), file=stream, flush=True)
        print(outcome_line(doc), file=stream, flush=True)
        if final:
            return doc
        time.sleep(interval)
