"""The floor: a bare httpx client posting the importer's own batches, with nothing else to do.

No queue, no state database, no audit: the payloads the producer wrote to `batches.payload` are read
before the clock starts, re-addressed to a fresh data source (same-length name, same bytes otherwise),
and posted by `concurrency` threads sharing one pooled client, like the importer's workers. The
floor keeps the two orderings GrowPanel needs, as the importer does: stage after stage, and a batch
that continues a customer's invoices only after the batch before it was answered; such a batch is
posted before any other ready one, the best order for a chain, which is the stage's critical path.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

import httpx
import orjson
from sqlalchemy import Engine, text

STAGES = ("plans", "customers", "invoices")


@dataclass
class FloorBatch:
    """One pre-built request body."""

    batch_id: int
    stage: str
    depends_on: int | None
    rows: int
    body: bytes


@dataclass(frozen=True)
class FloorResult:
    """What the floor posted and how fast."""

    rows: int
    requests: int
    seconds: float
    cpu_seconds: float
    errors: int

    @property
    def rows_per_second(self) -> float:
        """Rows accepted per wall-clock second."""
        return self.rows / self.seconds if self.seconds else 0.0


def load_batches(engine: Engine, run_id: int, from_source: str, to_source: str) -> list[FloorBatch]:
    """Every posted batch of a run, re-addressed from one data source to another."""
    if len(from_source) != len(to_source):
        raise ValueError("data source names must have the same length, so bodies keep their size")
    old = b'"data_source":"' + from_source.encode() + b'"'
    new = b'"data_source":"' + to_source.encode() + b'"'
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT id, stage, depends_on, payload FROM batches
                WHERE run_id = :r AND state = 'done' AND payload IS NOT NULL
                ORDER BY array_position(ARRAY['plans', 'customers', 'invoices'], stage), seq, part
                """
            ),
            {"r": run_id},
        ).all()
    batches = []
    for r in rows:
        body = bytes(r.payload).replace(old, new)
        batches.append(FloorBatch(r.id, r.stage, r.depends_on, len(orjson.loads(body)), body))
    return batches


class _Stage:
    """The batches of one stage, handed out when their dependency has been answered."""

    def __init__(self, batches: list[FloorBatch]) -> None:
        ids = {b.batch_id for b in batches}
        self.ready: deque[FloorBatch] = deque()
        self.waiting: dict[int, list[FloorBatch]] = defaultdict(list)
        for b in batches:
            if b.depends_on is not None and b.depends_on in ids:
                self.waiting[b.depends_on].append(b)
            else:
                self.ready.append(b)
        self.left = len(batches)
        self.lock = threading.Condition()

    def take(self) -> FloorBatch | None:
        """The next batch to post, waiting while only dependent ones are left; None when done."""
        with self.lock:
            while not self.ready and self.left:
                self.lock.wait()
            return self.ready.popleft() if self.ready else None

    def done(self, batch: FloorBatch) -> None:
        """Mark a batch answered and release the batches waiting for it."""
        with self.lock:
            self.left -= 1
            # Released batches go first: a chain is the stage's critical path, and the importer's slot
            # takes the next link first too (`backfill.store.claim_next`).
            self.ready.extendleft(self.waiting.pop(batch.batch_id, []))
            self.lock.notify_all()


def post_floor(base_url: str, api_key: str, batches: list[FloorBatch], concurrency: int, timeout: float = 30.0) -> FloorResult:
    """Post every batch, stage by stage, with `concurrency` threads; time it."""
    client = httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=10.0),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={"Content-Type": "application/json", "Accept": "application/json", "Authorization": f"Bearer {api_key}"},
    )
    accepted = 0
    errors = 0
    requests = 0
    count_lock = threading.Lock()
    failures: list[BaseException] = []

    def worker(stage: _Stage, path: str) -> None:
        nonlocal accepted, errors, requests
        while True:
            batch = stage.take()
            if batch is None:
                return
            try:
                response = client.post(path, content=batch.body)
                response.raise_for_status()
                result = orjson.loads(response.content)["result"]
                bad = sum(1 for r in result if r.get("export_status") == "error")
                with count_lock:
                    requests += 1
                    accepted += len(result) - bad
                    errors += bad
            except Exception as exc:  # noqa: BLE001 - reported after the threads stop
                failures.append(exc)
            finally:
                stage.done(batch)

    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for name in STAGES:
            stage = _Stage([b for b in batches if b.stage == name])
            threads = [threading.Thread(target=worker, args=(stage, f"/data/{name}")) for _ in range(concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        client.close()
    if failures:
        raise RuntimeError(f"the floor failed {len(failures)} requests, first: {failures[0]!r}")
    return FloorResult(rows=accepted, requests=requests, seconds=seconds, cpu_seconds=cpu, errors=errors)
