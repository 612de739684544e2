"""The importer's functions driven in-process for the performance guards, with real services only.

`Importer` holds what a worker holds (engine, httpx client to the sandbox subprocess, a Celery
publisher on a private Redis database, the rate limiter) and runs `produce_run` and
`process_batch` one batch at a time. `WireCounter` counts the statements that really reach
PostgreSQL, from libpq's own protocol trace: every simple `Query` and every extended-protocol
`Bind`, whether it came through SQLAlchemy, a raw psycopg cursor or a COPY.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from celery import Celery
from sqlalchemy import Engine, event, text

from tests.support.services import PROJECT_ROOT, Database

# A frontend message line of the trace: [timestamp TAB] F TAB length TAB type TAB ...
_STATEMENT = re.compile(rb"^(?:[^\t\n]*\t)?F\t\d+\t(Query|Bind)\t", re.MULTILINE)


def migrated_database(label: str) -> Database:
    """A fresh state database, migrated with the real `migrate` command."""
    db = Database(label)
    done = subprocess.run(
        [sys.executable, "-m", "console", "migrate"],
        env={**os.environ, "DATABASE_URL": db.url}, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        db.drop()
        raise RuntimeError(f"migrate failed: {done.stderr}")
    return db


class WireCounter:
    """Counts statements sent by every connection of an engine, from libpq's protocol trace."""

    def __init__(self, engine: Engine) -> None:
        self._file = tempfile.TemporaryFile()
        self._seen = 0
        self._libc = ctypes.CDLL(None)
        event.listen(engine, "connect", self._trace)
        # Connections opened before now are not traced: start from an empty pool.
        engine.dispose()

    def _trace(self, dbapi_connection: Any, _record: Any) -> None:
        # Each connection writes through its own stdio stream onto the same file (O_APPEND-like
        # because libc streams opened with "w" on one description share its offset).
        dbapi_connection.pgconn.trace(os.dup(self._file.fileno()))

    def trace(self) -> bytes:
        """Everything traced so far (frontend and backend messages of every traced connection)."""
        self._libc.fflush(None)
        self._file.seek(0)
        return self._file.read()

    def take(self) -> int:
        """Statements sent since the previous call."""
        # libpq writes the trace through stdio buffers: flush every stream of the process.
        self._libc.fflush(None)
        self._file.seek(0)
        data = self._file.read()
        total = len(_STATEMENT.findall(data))
        new, self._seen = total - self._seen, total
        return new


@dataclass
class Importer:
    """A worker's resources, in this process."""

    engine: Engine
    settings: Any
    posting: Any
    source_url: str

    def start(self, data_source: str, mapping_path: str, batch_size: int) -> int:
        """Create a run as `start` does."""
        from backfill.runs import RunOptions, create_run
        from producers.mapping import load_mapping

        mapping = load_mapping(mapping_path)
        return create_run(
            self.engine, RunOptions(data_source, self.settings.growpanel_api_url, batch_size, mapping.to_json(), mapping_path)
        )

    def produce(self, run_id: int, data_source: str) -> None:
        """Run the producer of a run to the end."""
        from producers.produce import ProducerContext, produce_run

        ctx = ProducerContext.from_settings(
            self.settings, self.engine, data_source, owner=f"perf-test:{os.getpid()}", on_checkpoint=lambda _run: None
        )
        assert produce_run(ctx, run_id)

    def post_all(self, run_id: int, count: Callable[[], int] = lambda: 0) -> list[tuple[str, int, int]]:
        """Post every batch of the run, one at a time in queue order, until the run ends.

        Returns (stage, rows, statements) per batch, `statements` being what `count()` says the
        batch's `process_batch` call sent (`count` is called right before and right after it).
        """
        from backfill.dispatch import advance
        from backfill.messages import BatchRef
        from workers.posting import process_batch

        advance(self.engine, run_id, self.posting.publisher, self.settings.max_in_flight)
        done: list[tuple[str, int, int]] = []
        while True:
            with self.engine.connect() as conn:
                queued = conn.execute(
                    text("SELECT id, stage, seq, part, rows FROM batches WHERE run_id = :r AND state = 'queued' ORDER BY seq, part"),
                    {"r": run_id},
                ).all()
            if not queued:
                return done
            for row in queued:
                count()
                outcome = process_batch(self.posting, BatchRef(row.id, run_id, row.stage, row.seq, row.part))
                done.append((row.stage, row.rows, count()))
                assert outcome == "done", f"batch {row.id}: {outcome}"


@contextmanager
def importer(
    state_url: str, source_url: str, sandbox_url: str, broker_url: str, keys: dict[str, str], serve_seconds: float = 0.0,
    **settings: Any,
) -> Iterator[Importer]:
    """An Importer over real services; the Celery app is private, so no global configuration changes."""
    from backfill.settings import load_settings
    from workers.celery_app import celery_config
    from workers.context import PostingContext
    from workers.publisher import CeleryPublisher

    config = load_settings(
        database_url=state_url,
        source_database_url=source_url,
        celery_broker_url=broker_url,
        growpanel_api_url=sandbox_url,
        growpanel_api_keys=keys,
        **settings,
    )
    app = Celery("growpanel_perf_guards")
    app.conf.update(celery_config(config))
    posting = PostingContext.from_settings(config, CeleryPublisher(app), owner=f"perf-test:{os.getpid()}", application_name="perf guard")
    # By default one batch per `process_batch` call, so that each call's statements are one batch's.
    posting.serve_seconds = serve_seconds
    try:
        yield Importer(posting.engine, config, posting, source_url)
    finally:
        posting.close()
        app.close()
