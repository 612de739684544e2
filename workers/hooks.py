"""Worker start-up and shutdown hooks: per-process resources, and the periodic sweep."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from backfill.alerts import Alert, Alerter
from backfill.redact import install_log_redaction
from backfill.sweep import SweepPolicy, sweep
from models.db import make_engine
from workers import producing, resources
from workers.celery_app import app, app_settings
from workers.publisher import CeleryPublisher

log = logging.getLogger(__name__)
_stop = threading.Event()


def _concurrency(sender: Any) -> int:
    return int(getattr(sender, "concurrency", None) or app.conf.worker_concurrency or 4)


def _is_prefork(sender: Any) -> bool:
    pool = getattr(sender, "pool_cls", None)
    name = getattr(pool, "__module__", "") + str(pool)
    return "prefork" in name


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger: logging.Logger, **_: Any) -> None:
    # Every record, ours or a library's (httpx, psycopg, Celery's tracebacks), loses keys and database
    # passwords before a handler writes it.
    install_log_redaction(app_settings().secrets(), logger)
    if logger.getEffectiveLevel() > logging.DEBUG:
        # httpx logs every request at INFO: one line per batch, which the attempts table already holds,
        # formatted and redacted on the hot path. Kept at DEBUG, where one asks for everything.
        logging.getLogger("httpx").setLevel(logging.WARNING)


@worker_init.connect
def _init_main(sender: Any = None, **_: Any) -> None:
    # Threads, solo and gevent pools run tasks in this process; prefork children get their own below.
    if not _is_prefork(sender):
        resources.init_resources(app_settings(), _concurrency(sender))


@worker_process_init.connect
def _init_child(**_: Any) -> None:
    resources.init_resources(app_settings(), int(app.conf.worker_concurrency or 1))


# How long a shutting-down worker waits for its producers to reach a checkpoint and hand over; past it,
# their lease expires and the sweeper restarts them elsewhere.
PRODUCER_STOP_WAIT = 10.0


@worker_process_shutdown.connect
def _close_child(**_: Any) -> None:
    producing.stop_producers(PRODUCER_STOP_WAIT)
    resources.close_resources()


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    _stop.clear()
    threading.Thread(target=_sweep_forever, name="growpanel-sweeper", daemon=True).start()


@worker_shutting_down.connect
def _stop_producing(**_: Any) -> None:
    # As soon as the shutdown starts (while Celery waits for the tasks in flight), producers stop at
    # their next checkpoint and hand over, instead of reading on until the process exits.
    producing.stopping.set()


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    _stop.set()
    producing.stop_producers(PRODUCER_STOP_WAIT)
    resources.close_resources()


def _sweep_forever() -> None:
    """Every SWEEP_INTERVAL: recover expired leases, lost messages and dead producers (one sweeper at a time)."""
    settings = app_settings()
    assert settings.database_url
    engine = make_engine(settings.database_url, pool_size=1, application_name="growpanel-backfill sweeper")
    publisher = CeleryPublisher(app)
    alerter = Alerter.from_settings(settings)
    policy = SweepPolicy(
        queue_timeout=settings.queue_timeout,
        max_deliveries=settings.max_deliveries,
        max_in_flight=settings.max_in_flight,
        retry_grace=max(2.0, settings.sweep_interval),
    )

    def on_pause(run_id: int, data_source: str, stage: str, reason: str) -> None:
        alerter.send(Alert(run_id, data_source, stage, None, reason))

    while not _stop.wait(settings.sweep_interval):
        try:
            found = sweep(engine, publisher, policy, on_pause)
            if any(found.values()):
                log.warning("sweep recovered %s", found)
        except Exception:  # noqa: BLE001 - the sweeper must outlive a database or broker outage
            log.exception("sweep failed; trying again in %s s", settings.sweep_interval)
    engine.dispose()
