"""The names of stages, outcomes and states, and the sets of them that decisions use.

Plain string constants, importable without SQLAlchemy. Every module that writes or compares a state
uses these names; SQL statements interpolate them (they are fixed words, never user input).
"""

from __future__ import annotations

STAGES = ("plans", "customers", "invoices")
ACCEPTED_OUTCOMES = ("inserted", "updated", "unchanged", "success")
REJECTED_OUTCOMES = ("error", "invalid", "skipped")
OUTCOMES = ACCEPTED_OUTCOMES + REJECTED_OUTCOMES


class RunState:
    """A run's states: running and paused are active; the other four are final."""

    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BatchState:
    """A batch's states.

    pending: written by the producer (or held by a pause); queued: a message is in the broker; running: a
    worker holds the lease; retry_wait: waiting for `not_before`; done/failed: final outcome recorded (failed
    is re-opened by `resume`); split: replaced by two halves after a 413.
    """

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    DONE = "done"
    FAILED = "failed"
    SPLIT = "split"


RUN_STATES = (
    RunState.RUNNING,
    RunState.PAUSED,
    RunState.SUCCEEDED,
    RunState.COMPLETED_WITH_ERRORS,
    RunState.FAILED,
    RunState.CANCELLED,
)
RUN_ACTIVE_STATES = (RunState.RUNNING, RunState.PAUSED)
# A run that ended by itself, every row with an outcome: the only runs `retry` works on.
RUN_FINISHED_STATES = (RunState.SUCCEEDED, RunState.COMPLETED_WITH_ERRORS)
RUN_FINAL_STATES = (*RUN_FINISHED_STATES, RunState.FAILED, RunState.CANCELLED)

BATCH_STATES = (
    BatchState.PENDING,
    BatchState.QUEUED,
    BatchState.RUNNING,
    BatchState.RETRY_WAIT,
    BatchState.DONE,
    BatchState.FAILED,
    BatchState.SPLIT,
)
# Counted against MAX_IN_FLIGHT: a message exists, or will be published again, for these.
IN_FLIGHT_STATES = (BatchState.QUEUED, BatchState.RUNNING, BatchState.RETRY_WAIT)
# A message for a batch in one of these may be claimed.
CLAIMABLE_STATES = (BatchState.QUEUED, BatchState.RETRY_WAIT)
FINAL_BATCH_STATES = (BatchState.DONE, BatchState.SPLIT)
# What keeps a stage open: everything but a final state (a failed batch waits for `resume`).
UNFINISHED_BATCH_STATES = (BatchState.PENDING, *IN_FLIGHT_STATES, BatchState.FAILED)


def sql_list(states: tuple[str, ...]) -> str:
    """`('a', 'b')` for an SQL `IN`: the states are fixed words of this module."""
    return "(" + ", ".join(f"'{s}'" for s in states) + ")"
