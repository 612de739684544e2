"""One importer deployment for one scenario: its state database, Redis, sandbox and worker processes.

Each scenario gets fresh ones, so memory peaks and CPU seconds belong to that scenario alone. A run
is started with the real `growpanel-backfill start` and followed through the state database; the
processes are measured from outside (see `bench.measure`).
"""

from __future__ import annotations

import itertools
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text

from bench.figures import MachineLoad, first_post
from bench.measure import CpuMeter, PostgresMeter, Sampler, Series, hwm_bytes
from bench.profiling import Profiler
from bench.services import (
    Database,
    RedisServer,
    ServiceProcess,
    batch_worker_argv,
    producer_argv,
    run_cli,
    start_sandbox,
    wait_until,
    worker_argv,
)

DATA_SOURCES = 24
# Same-length names, so a payload rewritten for another data source keeps its size.
KEYS = {f"key_{n:02d}": f"ds_{n:02d}" for n in range(1, DATA_SOURCES + 1)}
FINAL = ("succeeded", "completed_with_errors", "failed", "cancelled", "paused")


@dataclass(frozen=True)
class Setup:
    """How the importer is deployed and what the sandbox does."""

    workers: int = 2
    concurrency: int = 8
    pool: str = "threads"
    latency_ms: float = 0.0
    # Requests per second: the sandbox's limit and the importer's GROWPANEL_MAX_RPS (None: no limit).
    rate_limit: float | None = None
    max_in_flight: int = 64
    batch_size: int = 500
    # "separate": a worker of its own for the produce queue (its memory is the producer's);
    # "shared": every worker takes both queues, as `growpanel-backfill worker` does.
    producer: str = "separate"
    log_level: str = "INFO"

    @property
    def in_flight(self) -> int:
        """Batches that can be posted at once: the workers' slots, capped by MAX_IN_FLIGHT."""
        return min(self.workers * self.concurrency, self.max_in_flight)

    def label(self) -> str:
        """`2x8 threads` and the like."""
        return f"{self.workers}x{self.concurrency} {self.pool}"


@dataclass
class RunResult:
    """What one importer run did and cost."""

    run_id: int
    data_source: str
    state: str
    rows: dict[str, int]
    cli_started: float
    started_at: float
    finished_at: float
    stage_times: dict[str, dict[str, float | None]]
    cpu: dict[str, float]
    start_command_cpu: float
    series: dict[str, Series]
    hwm: dict[str, int]
    redis: dict[str, int]
    redis_before: dict[str, int]
    machine_busy: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    profiles: dict[str, Path] = field(default_factory=dict)
    # CPU seconds of the PostgreSQL backends of the state and source databases (not counted in importer_cpu).
    postgres_cpu: float = 0.0

    @property
    def total_rows(self) -> int:
        """Audit rows of the run."""
        return sum(self.rows.values())

    @property
    def seconds(self) -> float:
        """From the run's creation to its end (state database clock)."""
        return self.finished_at - self.started_at

    @property
    def seconds_from_start(self) -> float:
        """From `start` being invoked to the run's end: what a user waits (issue 13's measure)."""
        return self.finished_at - self.cli_started

    @property
    def first_request(self) -> float | None:
        """Seconds from `start` being invoked to the first POST arriving at the sandbox."""
        firsts = [first_post(self.requests, e) for e in ("plans", "customers", "invoices")]
        known = [f for f in firsts if f is not None]
        return min(known) - self.cli_started if known else None

    @property
    def importer_cpu(self) -> float:
        """CPU seconds of the producer and the workers (not the sandbox, not Postgres)."""
        return sum(v for k, v in self.cpu.items() if k != "sandbox")


class Deployment:
    """State database, private Redis, the sandbox and the workers, started for one scenario."""

    def __init__(self, setup: Setup, source_url: str, workdir: Path) -> None:
        self.setup = setup
        self.workdir = workdir
        self.source_url = source_url
        self.processes: list[ServiceProcess] = []
        self._data_sources = itertools.count(1)
        self.state = Database("state", prefix="gpbench")
        self.redis: RedisServer | None = None
        self.sandbox: Any = None
        try:
            self.redis = RedisServer().start()
            self.sandbox = start_sandbox(KEYS, setup.latency_ms, setup.rate_limit)
            self.env = {
                "DATABASE_URL": self.state.url,
                "SOURCE_DATABASE_URL": source_url,
                "CELERY_BROKER_URL": self.redis.url(),
                "GROWPANEL_API_URL": self.sandbox.url,
                "GROWPANEL_API_KEYS": ",".join(f"{ds}={key}" for key, ds in KEYS.items()),
                "BATCH_SIZE": str(setup.batch_size),
                "MAX_IN_FLIGHT": str(setup.max_in_flight),
                "LOG_LEVEL": setup.log_level,
            }
            if setup.rate_limit:
                self.env["GROWPANEL_MAX_RPS"] = f"{setup.rate_limit:g}"
            migrated = run_cli(["migrate"], self.env)
            if migrated.returncode != 0:
                raise RuntimeError(f"migrate failed: {migrated.stderr}")
            self._engine = create_engine(self.state.url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2)
            self._start_workers()
        except BaseException:
            self.close()
            raise

    def _start_workers(self) -> None:
        setup = self.setup
        if setup.producer == "separate":
            self.processes.append(ServiceProcess("producer", producer_argv(), self.env, self.workdir))
            argv = batch_worker_argv(setup.concurrency, setup.pool)
        else:
            argv = worker_argv(setup.concurrency, setup.pool)
        for n in range(1, setup.workers + 1):
            self.processes.append(ServiceProcess(f"worker{n}", argv, self.env, self.workdir))
        for process in self.processes:
            process.wait_ready()

    @property
    def engine(self) -> Engine:
        """The state database, for following runs."""
        return self._engine

    @property
    def sandbox_pid(self) -> int:
        """The sandbox's process id."""
        return int(self.sandbox.process.pid)

    def pids(self) -> dict[str, int]:
        """Every watched process: producer, workers, sandbox."""
        pids = {p.name: p.pid for p in self.processes}
        pids["sandbox"] = self.sandbox_pid
        return pids

    def next_data_source(self) -> tuple[str, str]:
        """A data source (and its key) not used yet in this deployment's sandbox."""
        n = next(self._data_sources)
        if n > DATA_SOURCES:
            raise RuntimeError("raise DATA_SOURCES in bench/deployment.py")
        key = f"key_{n:02d}"
        return KEYS[key], key

    def run(self, mapping: str, timeout: float = 3600, profile: list[str] | None = None) -> RunResult:
        """`start` a run of the mapping, wait for its end, and return what it did and cost."""
        data_source, key = self.next_data_source()
        env = {**self.env, "GROWPANEL_DATA_SOURCE_ID": data_source, "GROWPANEL_API_KEY": key}
        pids = self.pids()
        assert self.redis is not None
        redis_before = self.redis.memory()
        meter = CpuMeter(pids)
        pg = PostgresMeter(self.state.url, [self.state.name, self.source_url.rsplit("/", 1)[1]])
        load = MachineLoad()
        profiler = Profiler({name: pids[name] for name in profile or []}, self.workdir)
        pg.start()
        meter.start()
        load.start()
        with Sampler(pids) as sampler, profiler:
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            cli_started = time.time()
            started = run_cli(["start", "--mapping", mapping], env)
            children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if started.returncode != 0:
                raise RuntimeError(f"start failed ({started.returncode}): {started.stderr}")
            run_id = int(started.stdout.strip())
            state = self._wait(run_id, timeout)
        cpu = meter.stop()
        postgres_cpu = pg.stop()
        busy = load.stop()
        if state not in ("succeeded", "completed_with_errors"):
            raise RuntimeError(f"run {run_id} ended {state}: {self._reason(run_id)}")
        return RunResult(
            run_id=run_id,
            data_source=data_source,
            state=state,
            rows=self._rows(run_id),
            cli_started=cli_started,
            started_at=self._epoch(run_id, "started_at"),
            finished_at=self._epoch(run_id, "finished_at"),
            stage_times=self._stage_times(run_id),
            cpu=cpu,
            start_command_cpu=(children_after.ru_utime + children_after.ru_stime)
            - (children_before.ru_utime + children_before.ru_stime),
            series=sampler.series,
            hwm={name: hwm_bytes(pid) for name, pid in pids.items()},
            redis=self.redis.memory(),
            redis_before=redis_before,
            machine_busy=busy,
            requests=self.requests(data_source),
            profiles=profiler.outputs,
            postgres_cpu=postgres_cpu,
        )

    def _wait(self, run_id: int, timeout: float) -> str:
        def final() -> str | None:
            with self.engine.connect() as conn:
                state = conn.execute(text("SELECT state FROM runs WHERE id = :r"), {"r": run_id}).scalar_one()
            return state if state in FINAL else None

        return str(wait_until(final, timeout, 0.2, message=f"run {run_id} to finish"))

    def _reason(self, run_id: int) -> str:
        with self.engine.connect() as conn:
            return str(conn.execute(text("SELECT paused_reason FROM runs WHERE id = :r"), {"r": run_id}).scalar_one())

    def _rows(self, run_id: int) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT stage, sum(rows) AS n FROM batches WHERE run_id = :r AND state = 'done' GROUP BY stage"),
                {"r": run_id},
            ).all()
        return {r.stage: int(r.n) for r in rows}

    def _epoch(self, run_id: int, column: str) -> float:
        with self.engine.connect() as conn:
            return float(
                conn.execute(text(f"SELECT extract(epoch FROM {column}) FROM runs WHERE id = :r"), {"r": run_id}).scalar_one()  # noqa: S608
            )

    def _stage_times(self, run_id: int) -> dict[str, dict[str, float | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    """
                    SELECT stage, extract(epoch FROM started_at) AS started, extract(epoch FROM produced_at) AS produced,
                           extract(epoch FROM done_at) AS done
                    FROM run_stages WHERE run_id = :r
                    """
                ),
                {"r": run_id},
            ).all()
        return {
            r.stage: {k: (float(v) if v is not None else None) for k, v in (("started", r.started), ("produced", r.produced), ("done", r.done))}
            for r in rows
        }

    def requests(self, data_source: str) -> list[dict[str, Any]]:
        """The sandbox's request log for one data source (oldest first)."""
        response = httpx.get(f"{self.sandbox.url}/_sandbox/requests", headers=self.sandbox.inspect_headers, timeout=60)
        response.raise_for_status()
        return [r for r in response.json()["requests"] if r.get("data_source") == data_source]

    def close(self) -> None:
        """Stop everything this deployment started and drop its state database."""
        for process in self.processes:
            process.stop()
        self.processes.clear()
        if getattr(self, "_engine", None) is not None:
            self._engine.dispose()
        if self.sandbox is not None:
            self.sandbox.stop()
        if self.redis is not None:
            self.redis.cleanup()
        self.state.drop()
