"""A running importer for a test: its environment, worker processes, CLI calls and state queries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, create_engine, text

from tests.support.services import PROJECT_ROOT, wait_until

# Fast, test-sized policies: milliseconds of backoff, short leases, a sweeper that runs often.
FAST = {
    "RETRY_BACKOFF": "0.05,0.1,0.2,0.4,0.8",
    "RETRY_JITTER": "0.1",
    "LEASE_SECONDS": "4",
    "PRODUCER_LEASE_SECONDS": "4",
    "SWEEP_INTERVAL": "0.5",
    "QUEUE_TIMEOUT": "20",
    "HTTP_TIMEOUT": "2",
    "HTTP_CONNECT_TIMEOUT": "2",
    "BATCH_TIME_BUDGET": "60",
    "MAX_COUNTDOWN": "30",
    "LOG_LEVEL": "INFO",
}


def python_cli() -> list[str]:
    """The command line a user runs (`growpanel-backfill`), as this interpreter's module."""
    return [sys.executable, "-m", "console"]


@dataclass
class CliResult:
    """What a CLI call printed and returned."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """Standard output parsed as JSON."""
        return orjson.loads(self.stdout)


@dataclass
class Worker:
    """One `growpanel-backfill worker` process."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """Everything it logged so far."""
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal (SIGKILL: no goodbye, like the OOM killer)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(15)

    def stop(self) -> None:
        """Warm shutdown, then kill if it does not stop."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.kill()


@dataclass
class Stack:
    """An importer deployment for one test: env, workers, CLI, and a view of the state database."""

    env: dict[str, str]
    sandbox_url: str
    workdir: Path
    workers: list[Worker] = field(default_factory=list)
    _engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """The state database (for reading what happened, as an operator would with SQL)."""
        if self._engine is None:
            url = self.env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
            self._engine = create_engine(url, pool_size=2)
        return self._engine

    def with_env(self, **overrides: str) -> Stack:
        """The same deployment seen with other settings (e.g. another data source for the CLI)."""
        return Stack({**self.env, **overrides}, self.sandbox_url, self.workdir, self.workers, self._engine)

    def cli(self, *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 180) -> CliResult:
        """Run `growpanel-backfill ARGS` as a user would."""
        completed = subprocess.run(
            [*python_cli(), *args],
            env={**os.environ, **self.env, **(env or {})},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    def start_worker(self, concurrency: int = 8, pool: str = "threads", queues: str | None = None, **overrides: str) -> Worker:
        """Start a worker (of both queues, or of `queues`) and wait until it is ready to take tasks."""
        log_path = Path(tempfile.mkstemp(prefix="gpbt-worker-", suffix=".log", dir=self.workdir)[1])
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            [*python_cli(), "worker", "--concurrency", str(concurrency), "--pool", pool, *(["--queues", queues] if queues else [])],
            env={**os.environ, **self.env, **overrides},
            cwd=self.workdir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(process, log_path)
        self.workers.append(worker)
        wait_until(lambda: "ready." in worker.log() or process.poll() is not None, 60, message="the worker to start")
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}:\n{worker.log()[-3000:]}")
        return worker

    def stop_workers(self) -> None:
        """Stop every worker this stack started."""
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def start_run(self, *args: str, env: dict[str, str] | None = None) -> int:
        """`start` without --wait: the run id is the only line of standard output."""
        result = self.cli("start", *args, env=env)
        assert result.code == 0, f"start failed ({result.code}): {result.stderr}"
        return int(result.stdout.strip())

    def status(self, run_id: int) -> dict[str, Any]:
        """The run's `status --json` document (read in-process, as the CLI does)."""
        from console.status import status_document

        with self.engine.connect() as conn:
            return status_document(conn, run_id)

    def wait_for_state(self, run_id: int, states: tuple[str, ...] = ("succeeded", "completed_with_errors"), timeout: float = 120) -> dict[str, Any]:
        """Poll until the run reaches one of `states`; fail early if it pauses unexpectedly."""
        def reached() -> dict[str, Any] | None:
            doc = self.status(run_id)
            if doc["state"] in states:
                return doc
            if doc["state"] in ("paused", "failed") and doc["state"] not in states:
                raise AssertionError(f"run {run_id} is {doc['state']}: {doc.get('paused_reason')}\n{self.logs()[-4000:]}")
            return None

        return wait_until(reached, timeout, interval=0.1, message=f"run {run_id} to reach {states}")  # type: ignore[no-any-return]

    def audit(self, run_id: int) -> dict[tuple[str, str], dict[str, Any]]:
        """(entity, id) -> audit row, for assertions."""
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM audit WHERE run_id = :r"), {"r": run_id}).mappings().all()
        return {(r["entity"], r["external_id"]): dict(r) for r in rows}

    def sql(self, query: str, **params: Any) -> list[Any]:
        """Rows of a query on the state database."""
        with self.engine.begin() as conn:
            result = conn.execute(text(query), params)
            return list(result.mappings().all()) if result.returns_rows else []

    def logs(self) -> str:
        """All worker logs."""
        return "\n".join(w.log() for w in self.workers)

    def close(self) -> None:
        """Stop workers and release connections."""
        self.stop_workers()
        if self._engine is not None:
            self._engine.dispose()


class SandboxView:
    """The sandbox's inspection routes, for one data source."""

    def __init__(self, url: str, key: str, data_source: str, token: str) -> None:
        self.url = url
        self.key = key
        self.data_source = data_source
        # The sandbox serves /_sandbox/* only with its inspection token (X-Sandbox-Token).
        self.client = httpx.Client(base_url=url, timeout=10, headers={"X-Sandbox-Token": token})

    def ledger(self) -> dict[str, list[dict[str, Any]]]:
        """Stored objects of this data source by kind."""
        data = self.client.get("/_sandbox/ledger").json()
        source = data.get(self.data_source, {})
        return {kind: source.get(kind, []) for kind in ("plans", "customers", "invoices")}

    def requests(self) -> list[dict[str, Any]]:
        """Requests made with this data source's key."""
        data = self.client.get("/_sandbox/requests").json()
        return [r for r in data["requests"] if r.get("data_source") == self.data_source]

    def violations(self) -> list[dict[str, Any]]:
        """Order violations of this data source."""
        data = self.client.get("/_sandbox/violations").json()
        return [v for v in data["violations"] if v.get("data_source") == self.data_source]

    def faults(self, **settings: Any) -> dict[str, Any]:
        """Change the fault injection (global to the sandbox)."""
        response = self.client.post("/_sandbox/faults", json=settings)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to the API with this data source's key."""
        return self.client.request(method, path, headers={"Authorization": f"Bearer {self.key}"}, **kwargs)


@contextmanager
def cleared_faults(view: SandboxView) -> Iterator[SandboxView]:
    """Faults reset to none after the block, whatever happens."""
    try:
        yield view
    finally:
        view.faults(**NO_FAULTS)


NO_FAULTS: dict[str, Any] = {
    "latency_ms": 0,
    "latency_per_row_ms": 0,
    "jitter_ms": 0,
    "error_rate": 0,
    "lost_rate": 0,
    "hang_rate": 0,
    "outage": False,
    "throttle_rate": 0,
    "paths": None,
    "max_batch": 1000,
    "rate_limit": None,
}
__all__ = ["FAST", "PROJECT_ROOT", "CliResult", "SandboxView", "Stack", "Worker", "cleared_faults", "time"]
