"""Keeping the leases of in-flight requests alive: one thread per process, one statement per tick.

A request may outlive LEASE_SECONDS (a slow API, a response trickling in under httpx's per-read
timeout). Without renewal the sweeper would hand the batch to a second worker while the first is still
posting it: two requests for one batch at once, and the next batch of the customer's chain sent
before the first is answered. While a process is alive its leases stay alive; when it dies, they
expire within LEASE_SECONDS and the sweeper recovers the batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from backfill import store

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews, every third of the lease, the leases of the requests this process has in flight."""

    def __init__(self, engine: Engine, lease_seconds: float) -> None:
        self.engine = engine
        self.lease_seconds = lease_seconds
        self.interval = lease_seconds / 3
        self._held: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, batch_id: int, owner: str) -> Iterator[None]:
        """Keep `owner`'s lease of the batch alive for the duration of the block."""
        with self._lock:
            self._held[batch_id] = owner
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="growpanel-lease-keeper", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                if self._held.get(batch_id) == owner:
                    del self._held[batch_id]

    def renew_now(self) -> list[int]:
        """One renewal of every held lease; returns the batch ids renewed."""
        with self._lock:
            held = list(self._held.items())
        if not held:
            return []
        with self.engine.begin() as conn:
            renewed = store.renew_leases(conn, held, self.lease_seconds)
        kept = set(renewed)
        missed = [(batch_id, owner) for batch_id, owner in held if batch_id not in kept]
        with self._lock:
            # A batch released between the snapshot and the renewal is finished, not lost: only those
            # still in flight now had their lease taken (a state database away longer than a lease).
            lost = sorted(batch_id for batch_id, owner in missed if self._held.get(batch_id) == owner)
        if lost:
            # The request goes on; its release will find the lease gone and record nothing.
            log.warning("leases of batches %s were lost while their requests were in flight", lost)
        return renewed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.renew_now()
            except Exception:  # noqa: BLE001 - a database blip must not stop the keeper
                log.exception("could not renew leases; trying again in %.1f s", self.interval)

    def stop(self) -> None:
        """Stop the thread (process shutdown)."""
        self._stop.set()
