"""The CLI publishes without Celery (issue 13), and real workers run what it publishes.

`tests/unit/test_broker.py` shows the messages equal Celery's; these show a Celery worker agrees.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

from backfill.broker import RedisPublisher
from backfill.messages import BatchRef
from tests.integration.scenarios import CUSTOMERS, INVOICES, PLANS
from tests.support.imports import top_level_packages
from tests.support.services import Database, wait_until
from tests.support.sources import build_source, mapping_file
from tests.support.stack import SandboxView, Stack


def test_start_publishes_without_importing_celery_and_a_worker_runs_the_run(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    # When the user starts a backfill, with the process's imports recorded
    result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.code == 0, result.stderr[-3000:]
    run_id = int(result.stdout.strip())
    # Then `start` loaded neither Celery nor kombu (~0.1 s of the 0.5 s to the first request) nor SQLAlchemy
    # (~0.15 s: the run is created with psycopg) nor the workers, and wrote the message with redis-py,
    imported = top_level_packages(result.stderr)
    heavy = {"celery", "kombu", "billiard", "vine", "sqlalchemy", "workers"}
    assert not imported & heavy, sorted(imported & heavy)
    assert {"redis", "psycopg"} <= imported
    # and a Celery worker took that `produce` message and ran the whole run from it.
    doc = stack.wait_for_state(run_id, timeout=90)
    assert doc["state"] == "succeeded"
    assert all(doc["stages"][stage]["accepted"] == n for stage, n in (("plans", 3), ("customers", 2), ("invoices", 8)))


def test_a_worker_holds_a_batch_message_until_the_eta_the_cli_wrote(stack: Stack) -> None:
    # Given a batch message with a countdown from RedisPublisher, for a batch no database holds
    ref = BatchRef(2_100_000_000 + random.randrange(10**6), 2_100_000_000 + random.randrange(10**6), "plans", 1)
    publisher = RedisPublisher.from_url(stack.env["CELERY_BROKER_URL"])
    sent = time.monotonic()
    publisher.publish_batch(ref, countdown=1.5)
    publisher.close()
    # Then the worker runs `post_batch` (under its shadow name) once the eta is due, not before
    done = re.compile(rf"Task post_batch {re.escape(ref.label)}\[[0-9a-f-]+\] succeeded in [\d.]+s: 'gone'")
    wait_until(lambda: done.search(stack.logs()), 30, message=f"the worker to run {ref.label}")
    assert time.monotonic() - sent >= 1.5
