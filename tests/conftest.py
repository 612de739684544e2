"""Session fixtures: a real PostgreSQL (throwaway databases), a private Redis, the sandbox, a worker.

Nothing here is mocked: tests drive the importer through its command line and real Celery worker
processes, against the sandbox over HTTP. A missing service is a failure, not a skip.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.testing import SandboxProcess
from tests.support.services import Database, RedisServer
from tests.support.stack import FAST, NO_FAULTS, SandboxView, Stack

DATA_SOURCES = 120
KEYS = {f"key_ds_{n}": f"ds_{n}" for n in range(1, DATA_SOURCES + 1)}
_next_data_source = itertools.count(1)


@pytest.fixture(scope="session")
def state_db() -> Iterator[Database]:
    """The importer's state database, migrated once with the real `migrate` command."""
    db = Database("state")
    yield db
    db.drop()


@pytest.fixture(scope="session")
def source_db() -> Iterator[Database]:
    """The billing source database; each test seeds its own schema in it."""
    db = Database("source")
    yield db
    db.drop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private Redis for the shared worker (tests that restart Redis start their own)."""
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def sandbox_process() -> Iterator[SandboxProcess]:
    """The sandbox on a free port, with a key per test data source and inspection on."""
    with SandboxProcess(KEYS, "--inspect", "--progress-delay", "0.3", "--log-level", "warning") as process:
        yield process


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """Where CLI calls run and logs go."""
    with tempfile.TemporaryDirectory(prefix="gpbt-") as path:
        yield Path(path)


def base_env(state_db: Database, source_db: Database, broker: str, sandbox_url: str) -> dict[str, str]:
    """The environment of a deployment (workers and CLI share it, as in production)."""
    return {
        "DATABASE_URL": state_db.url,
        "SOURCE_DATABASE_URL": source_db.url,
        "CELERY_BROKER_URL": broker,
        "GROWPANEL_API_URL": sandbox_url,
        "GROWPANEL_API_KEYS": ",".join(f"{ds}={key}" for key, ds in KEYS.items()),
        "BATCH_SIZE": "50",
        **FAST,
    }


@pytest.fixture(scope="session")
def shared_stack(state_db: Database, source_db: Database, redis_server: RedisServer, sandbox_process: SandboxProcess, workdir: Path) -> Iterator[Stack]:
    """A deployment with one running worker, shared by the tests that need no fault of their own."""
    stack = Stack(base_env(state_db, source_db, redis_server.url(0), sandbox_process.url), sandbox_process.url, workdir)
    migrated = stack.cli("migrate")
    assert migrated.code == 0, migrated.stderr
    stack.start_worker(concurrency=8)
    yield stack
    stack.close()


@pytest.fixture
def data_source() -> tuple[str, str]:
    """A data source (and its key) no other test has used."""
    n = next(_next_data_source)
    assert n <= DATA_SOURCES, "raise DATA_SOURCES in tests/conftest.py"
    return f"ds_{n}", f"key_ds_{n}"


@pytest.fixture
def stack(shared_stack: Stack, data_source: tuple[str, str]) -> Stack:
    """The shared deployment, with the CLI pointed at this test's data source."""
    ds, key = data_source
    return shared_stack.with_env(GROWPANEL_DATA_SOURCE_ID=ds, GROWPANEL_API_KEY=key)


@pytest.fixture
def sandbox(sandbox_process: SandboxProcess, data_source: tuple[str, str]) -> Iterator[SandboxView]:
    """The sandbox as this test's data source sees it; faults are cleared afterwards."""
    ds, key = data_source
    view = SandboxView(sandbox_process.url, key, ds, sandbox_process.inspect_token)
    yield view
    view.faults(**NO_FAULTS)
    view.client.close()


_schemas = itertools.count(1)


@pytest.fixture
def source_schema(source_db: Database) -> str:
    """A fresh schema name in the source database for this test."""
    return f"src_{next(_schemas)}"


@pytest.fixture
def make_stack(source_db: Database, sandbox_process: SandboxProcess, workdir: Path, data_source: tuple[str, str]) -> Iterator[Callable[..., Stack]]:
    """Build a deployment of its own (own state database and broker, own workers) for a fault test.

    Its workers and sweeper see only its runs, so killing, flushing or misconfiguring them cannot
    disturb the shared deployment, nor can the shared worker rescue this test's runs.
    """
    made: list[tuple[Stack, Database, RedisServer | None]] = []

    def build(redis: RedisServer | None = None, **env: str) -> Stack:
        db = Database("state")
        own_redis = None
        if redis is None:
            own_redis = redis = RedisServer()
            redis.start()
        ds, key = data_source
        stack = Stack(
            {**base_env(db, source_db, redis.url(0), sandbox_process.url), "GROWPANEL_DATA_SOURCE_ID": ds, "GROWPANEL_API_KEY": key, **env},
            sandbox_process.url,
            workdir,
        )
        migrated = stack.cli("migrate")
        assert migrated.code == 0, migrated.stderr
        made.append((stack, db, own_redis))
        return stack

    yield build
    for stack, db, own_redis in made:
        stack.close()
        db.drop()
        if own_redis is not None:
            own_redis.cleanup()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Spread the slow scenarios so that each parallel worker starts with its share of them.

    They mostly wait on the documented default timeouts; started first on every worker they overlap with
    everything else instead of ending last one after another. xdist's `load` scheduler gives worker k
    the items [k*c, (k+1)*c) first, with c = len(items) // workers // 4: the slow ones go at the head
    of those chunks. In one process they simply run first.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    rest = [item for item in items if item.get_closest_marker("slow") is None]
    chunk = max(1, len(items) // workers // 4)
    ordered: list[pytest.Item | None] = [None] * len(items)
    for j, item in enumerate(slow):
        position = min((j % workers) * chunk + j // workers, len(items) - 1)
        while ordered[position] is not None:
            position = (position + 1) % len(items)
        ordered[position] = item
    filler = iter(rest)
    items[:] = [item if item is not None else next(filler) for item in ordered]
