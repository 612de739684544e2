"""Running a run's producer inside a worker: the plain function behind the `produce` task."""

from __future__ import annotations

import logging

from sqlalchemy import text

from backfill.alerts import Alert
from backfill.errors import ConfigError
from backfill.runs import pause_run
from producers.produce import produce_run
from producers.source import SourceReadError
from models.states import RunState
from workers.resources import WorkerResources

log = logging.getLogger(__name__)


def run_producer(resources: WorkerResources, run_id: int) -> str:
    """Produce the run's remaining stages; a source that fails pauses the run with the reason."""
    posting = resources.posting
    with posting.engine.connect() as conn:
        row = conn.execute(text("SELECT data_source, state FROM runs WHERE id = :r"), {"r": run_id}).first()
    if row is None or row.state != RunState.RUNNING:
        return "not running"
    try:
        done = produce_run(resources.producer(row.data_source), run_id)
    except (SourceReadError, ConfigError) as exc:
        return _pause(resources, run_id, row.data_source, str(exc))
    except Exception as exc:  # noqa: BLE001 - a run must never be left running without a producer
        log.exception("producer of run %s failed", run_id)
        return _pause(resources, run_id, row.data_source, f"the producer failed: {type(exc).__name__}: {exc}")
    return "produced" if done else "not ours"


def _pause(resources: WorkerResources, run_id: int, data_source: str, reason: str) -> str:
    posting = resources.posting
    with posting.engine.begin() as conn:
        paused = pause_run(conn, run_id, reason[:2000])
    if paused:
        posting.alerter.send(Alert(run_id, data_source, None, None, reason))
    return "paused"
