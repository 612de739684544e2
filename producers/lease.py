"""The producer's lease, kept alive by time, not by rows.

A sort over tens of millions of invoices can take minutes before its first row, and so can the source
while it restarts: renewing only at a checkpoint would let the lease expire under a live producer, and
the sweeper would start a second one (which would run the same sort, and lose its lease the same way).
A small thread renews the lease every quarter of its length with its own state-database connection.
When the renewal is refused (the run was paused or cancelled, or another producer took over), it
cancels the source query in flight, so the producer stops at once instead of after its first row.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from backfill.errors import LeaseLost

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews a lease in the background; `check()` raises LeaseLost once it could not be renewed."""

    def __init__(self, renew: Callable[[], bool], lease_seconds: float, run_id: int) -> None:
        self._renew = renew
        self._interval = max(lease_seconds / 4, 0.05)
        self._run_id = run_id
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._source: Any = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"producer-lease-{run_id}", daemon=True)
        self.renewals = 0

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                kept = self._renew()
            except Exception as exc:  # noqa: BLE001 - a state database hiccup: the next beat tries again
                log.warning("producer of run %s could not renew its lease (%s); retrying", self._run_id, type(exc).__name__)
                continue
            if not kept:
                self._lost.set()
                self._cancel_source()
                return
            self.renewals += 1

    def _cancel_source(self) -> None:
        with self._lock:
            source = self._source
        if source is not None:
            try:
                source.cancel_safe(timeout=5)
            except Exception:  # noqa: BLE001 - the query ends with the connection anyway
                pass

    def watch(self, source: Any) -> None:
        """The source connection whose query is cancelled when the lease is lost (None: none now)."""
        with self._lock:
            self._source = source
        if source is not None and self._lost.is_set():
            self._cancel_source()

    @property
    def lost(self) -> bool:
        """Whether a renewal was refused."""
        return self._lost.is_set()

    def check(self) -> None:
        """Raise LeaseLost if the lease could not be renewed."""
        if self._lost.is_set():
            raise LeaseLost(f"producer of run {self._run_id}")

    def sleep(self, seconds: float) -> None:
        """Wait (the lease stays renewed), then check it; returns early when it is lost."""
        self._lost.wait(seconds)
        self.check()
