"""Running a run's producer inside a worker, in a thread of its own: the plain functions behind `produce`.

The `produce` task takes the run's producer lease and hands production to a dedicated thread, then
returns: the Celery slot it ran in goes back to posting at once, so a worker started with
`--concurrency N` keeps N requests in flight while it produces. The lease (not the message, which is
acknowledged when the task returns) is what guarantees a producer: if this process dies, the lease
expires and the sweeper publishes `produce` again. While the process lives, the producer's own
heartbeat (`producers.lease`) extends the lease by time, so a slow source never gets a second producer.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import text

from backfill.alerts import Alert
from backfill.errors import ConfigError
from backfill.runs import claim_producer, pause_run
from models.states import RunState
from producers.produce import produce_run, producer_token
from producers.source import SourceReadError
from workers.resources import WorkerResources

log = logging.getLogger(__name__)

# Set at worker shutdown: producers stop at their next checkpoint and give their lease back.
stopping = threading.Event()
_threads: set[threading.Thread] = set()
_lock = threading.Lock()


def start_producer(resources: WorkerResources, run_id: int) -> str:
    """Take the run's producer lease and start producing in a thread; returns at once."""
    posting = resources.posting
    with posting.engine.connect() as conn:
        row = conn.execute(text("SELECT data_source, state FROM runs WHERE id = :r"), {"r": run_id}).first()
    if row is None or row.state != RunState.RUNNING:
        return "not running"
    token = producer_token(posting.owner)
    with posting.engine.begin() as conn:
        claimed = claim_producer(conn, run_id, token, resources.settings.producer_lease_seconds)
    if claimed is None:
        return "not ours"
    thread = threading.Thread(
        target=run_producer, args=(resources, run_id, row.data_source, token), name=f"growpanel-producer-{run_id}", daemon=True
    )
    with _lock:
        _threads.add(thread)
    thread.start()
    return "started"


def run_producer(resources: WorkerResources, run_id: int, data_source: str, token: str) -> str:
    """Produce the run's remaining stages under `token`'s lease; a source that fails pauses the run."""
    try:
        done = produce_run(resources.producer(data_source, stopping), run_id, token=token)
    except (SourceReadError, ConfigError) as exc:
        return _pause(resources, run_id, data_source, str(exc))
    except Exception as exc:  # noqa: BLE001 - a run must never be left running without a producer
        log.exception("producer of run %s failed", run_id)
        return _pause(resources, run_id, data_source, f"the producer failed: {type(exc).__name__}: {exc}")
    finally:
        with _lock:
            _threads.discard(threading.current_thread())
    if not done and stopping.is_set():
        # This worker is shutting down: another one continues from the last checkpoint at once.
        log.info("producer of run %s stopped at a checkpoint (worker shutting down): handed over", run_id)
        resources.posting.publisher.publish_produce(run_id)
        return "handed over"
    return "produced" if done else "not ours"


def stop_producers(timeout: float) -> None:
    """Ask running producers to stop at their next checkpoint, and wait up to `timeout` for them."""
    stopping.set()
    with _lock:
        threads = list(_threads)
    for thread in threads:
        thread.join(timeout)


def _pause(resources: WorkerResources, run_id: int, data_source: str, reason: str) -> str:
    posting = resources.posting
    with posting.engine.begin() as conn:
        paused = pause_run(conn, run_id, reason[:2000])
    if paused:
        posting.alerter.send(Alert(run_id, data_source, None, None, reason))
    return "paused"
