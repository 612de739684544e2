"""The names of stages, outcomes and states: plain constants, importable without SQLAlchemy."""

from __future__ import annotations

STAGES = ("plans", "customers", "invoices")
ACCEPTED_OUTCOMES = ("inserted", "updated", "unchanged", "success")
REJECTED_OUTCOMES = ("error", "invalid", "skipped")
OUTCOMES = ACCEPTED_OUTCOMES + REJECTED_OUTCOMES
RUN_STATES = ("running", "paused", "succeeded", "completed_with_errors", "failed", "cancelled")
RUN_ACTIVE_STATES = ("running", "paused")
# pending: written by the producer; queued: a message is in the broker; running: a worker holds the lease;
# retry_wait: waiting for `not_before`; done/failed: final; split: replaced by two halves after a 413.
BATCH_STATES = ("pending", "queued", "running", "retry_wait", "done", "failed", "split")
IN_FLIGHT_STATES = ("queued", "running", "retry_wait")
FINAL_BATCH_STATES = ("done", "split")
