"""What travels between the state database and the broker: batch references, the publisher, results."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

# The two queues, named once: the workers consume them, and both publishers (Celery's in the workers,
# `backfill.broker` in the command line) write to them.
BATCH_QUEUE = "growpanel.batches"
PRODUCE_QUEUE = "growpanel.produce"

# How hard a publisher tries before it gives up and logs (kombu's `retry_policy` keywords): 3 retries
# after 0.2, 0.7 and 1.2 s. Giving up loses nothing: the sweeper re-queues from the state database.
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}


@dataclass(frozen=True, slots=True)
class BatchRef:
    """What a batch message carries: ids only, never rows, never the key."""

    batch_id: int
    run_id: int
    stage: str
    seq: int
    part: str = ""

    @property
    def label(self) -> str:
        """`invoices #123 of run 7` (with the half for a split batch)."""
        number = f"{self.seq}.{self.part}" if self.part else str(self.seq)
        return f"{self.stage} #{number} of run {self.run_id}"


class Publisher(Protocol):
    """Sends task messages: over Celery in `workers.publisher`, straight to Redis in `backfill.broker`.

    Neither raises: a message that cannot be published is logged, and the sweeper re-queues it.
    """

    def publish_batch(self, ref: BatchRef, countdown: float | None = None) -> None:
        """Queue one batch for posting."""

    def publish_produce(self, run_id: int) -> None:
        """Queue (or re-queue) the producer of a run."""


class BatchResult(str, Enum):
    """What one delivery of a batch message did (for logs and tests)."""

    DONE = "done"  # every row has its outcome
    FAILED = "failed"  # retries or time budget spent: the run paused
    SPLIT = "split"  # 413: replaced by two halves
    RETRY = "retry"  # back to the queue after a delay
    PAUSED = "paused"  # a problem every batch shares (key, URL): the run paused, the batch held
    LOST = "lost"  # our lease went to another worker, which records the batch
    HELD = "held"  # the run is paused or cancelled: the batch waits as pending
    EARLY = "early"  # the message came before `not_before`: published again for later
    DUPLICATE = "duplicate"  # another delivery holds or finished the batch
    GONE = "gone"  # the batch no longer exists

    @property
    def finished(self) -> bool:
        """Whether the batch reached a state after which the run may advance."""
        return self in (BatchResult.DONE, BatchResult.FAILED, BatchResult.SPLIT)
