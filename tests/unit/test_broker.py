"""`backfill.broker`: the CLI's messages are the ones Celery writes, read back raw from a real Redis.

Celery publishes in a process of its own, set up as the CLI used to (`use_settings`, then
`CeleryPublisher`), so that tasks other tests load in this process cannot change what it sends.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis

from backfill.broker import RedisPublisher, takes
from backfill.messages import BATCH_QUEUE, PRODUCE_QUEUE, BatchRef
from tests.support.services import PROJECT_ROOT, RedisServer, free_port

REF = BatchRef(41, 7, "invoices", 12, "ab")
COUNTDOWN = 30.5
DB = 9  # a database of the session's private Redis that no worker reads

_CELERY_SENDS = f"""
import sys
from backfill.messages import BatchRef
from backfill.settings import Settings
from workers.celery_app import app, use_settings
from workers.publisher import CeleryPublisher

use_settings(Settings(celery_broker_url=sys.argv[1]))
publisher = CeleryPublisher(app)
publisher.publish_batch(BatchRef{(REF.batch_id, REF.run_id, REF.stage, REF.seq, REF.part)!r}, countdown={COUNTDOWN})
publisher.publish_produce(7)
"""


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client(DB)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _lists(client: redis.Redis) -> dict[str, list[bytes]]:
    """Every list in the database, raw, oldest message first (LPUSH puts the newest at the head)."""
    keys = sorted(k.decode() for k in client.keys("*") if client.type(k) == b"list")
    return {key: list(reversed(client.lrange(key, 0, -1))) for key in keys}


def _normalised(raw: bytes) -> tuple[dict[str, Any], Any, str | None]:
    """The envelope with its per-message random fields checked and blanked, its decoded body, its eta."""
    message = json.loads(raw)
    headers, properties = message["headers"], message["properties"]
    task_id = headers["id"]
    uuid.UUID(task_id)
    assert headers["root_id"] == properties["correlation_id"] == task_id
    uuid.UUID(properties["delivery_tag"])
    uuid.UUID(properties["reply_to"])  # Celery's id of the sending app and thread
    name, _, host = headers["origin"].partition("@")
    assert re.fullmatch(r"gen\d+", name) and host == socket.gethostname(), headers["origin"]
    for key in ("id", "root_id", "origin"):
        headers[key] = "*"
    for key in ("correlation_id", "delivery_tag", "reply_to"):
        properties[key] = "*"
    eta = headers["eta"]
    headers["eta"] = eta and "*"
    return message, json.loads(base64.b64decode(message["body"])), eta


def _eta_within(eta: str | None, before: datetime, after: datetime) -> None:
    assert eta is not None
    # What Celery writes: `datetime.isoformat()` of an aware UTC instant.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00", eta), eta
    at = datetime.fromisoformat(eta)
    assert before + timedelta(seconds=COUNTDOWN) <= at <= after + timedelta(seconds=COUNTDOWN)


def test_the_cli_writes_the_very_messages_celery_writes(broker: redis.Redis, redis_server: RedisServer) -> None:
    url = redis_server.url(DB)
    # Given the messages CeleryPublisher sends for a batch (with a countdown) and a producer
    before = datetime.now().astimezone()
    done = subprocess.run([sys.executable, "-c", _CELERY_SENDS, url], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)
    after = datetime.now().astimezone()
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    celery = _lists(broker)
    broker.flushdb()
    # When RedisPublisher sends the same two
    ours_before = datetime.now().astimezone()
    publisher = RedisPublisher.from_url(url)
    publisher.publish_batch(REF, countdown=COUNTDOWN)
    publisher.publish_produce(7)
    publisher.close()
    ours_after = datetime.now().astimezone()
    ours = _lists(broker)
    # Then they went to the same lists (priority 0: the queue's own key, no prefix), one message each,
    assert list(celery) == list(ours) == [BATCH_QUEUE, PRODUCE_QUEUE], (list(celery), list(ours))
    assert [len(v) for v in celery.values()] == [len(v) for v in ours.values()] == [1, 1]
    for queue in (BATCH_QUEUE, PRODUCE_QUEUE):
        theirs, their_body, their_eta = _normalised(celery[queue][0])
        mine, my_body, my_eta = _normalised(ours[queue][0])
        # equal but for the random ids, body included,
        assert mine == theirs, queue
        assert my_body == their_body
        if queue == BATCH_QUEUE:
            # with a countdown written as Celery writes its eta,
            _eta_within(their_eta, before, after)
            _eta_within(my_eta, ours_before, ours_after)
        else:
            assert my_eta is their_eta is None
    # and they say what CeleryPublisher always said.
    batch, batch_body, _ = _normalised(ours[BATCH_QUEUE][0])
    assert batch["headers"]["task"] == "post_batch"
    assert batch["headers"]["shadow"] == "post_batch invoices #12.ab of run 7"
    assert batch_body[0] == [41, 7, "invoices", 12, "ab"]
    produce, produce_body, _ = _normalised(ours[PRODUCE_QUEUE][0])
    assert (produce["headers"]["task"], produce["headers"]["shadow"], produce_body[0]) == ("produce", "produce run 7", [7])


def test_the_worker_takes_the_oldest_message_first(broker: redis.Redis, redis_server: RedisServer) -> None:
    publisher = RedisPublisher.from_url(redis_server.url(DB))
    for run_id in (1, 2, 3):
        publisher.publish_produce(run_id)
    # A worker takes messages with BRPOP on the queue's key, as kombu's Redis transport does.
    taken = []
    while (item := broker.brpop([PRODUCE_QUEUE], timeout=1)) is not None:
        taken.append(json.loads(base64.b64decode(json.loads(item[1])["body"]))[0][0])
    assert taken == [1, 2, 3]
    publisher.close()


def test_a_broker_that_does_not_answer_is_retried_then_logged_without_the_password(caplog: pytest.LogCaptureFixture) -> None:
    publisher = RedisPublisher.from_url(f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="backfill.broker"):
        publisher.publish_produce(5)
        publisher.publish_batch(REF)
    elapsed = time.monotonic() - started
    # Three retries each, after 0.2, 0.7 and 1.2 s (PUBLISH_RETRY), then a warning and no exception.
    assert 2 * 2.1 <= elapsed < 20, elapsed
    assert [r.getMessage() for r in caplog.records] == [
        "could not publish the producer of run 5 (ConnectionError); the sweeper will retry",
        "could not publish batch invoices #12.ab of run 7 (ConnectionError); the sweeper will re-queue it",
    ]
    assert "s3cret" not in caplog.text + repr(publisher) + repr(publisher.client)


@pytest.mark.parametrize(
    ("url", "direct"),
    [
        ("redis://127.0.0.1:6379/3", True),
        ("redis://:pw@redis.internal", True),
        ("rediss://user:pw@redis.internal:6380/0", True),
        ("unix:///run/redis.sock", True),
        # Query options the two clients read differently (`db`), and what only kombu reads: Celery's.
        ("redis://127.0.0.1:6379/0?db=2", False),
        ("rediss://redis.internal:6380/0?ssl_cert_reqs=required", False),
        ("redis+socket:///run/redis.sock", False),
        ("sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26379", False),
        ("redis://a:6379;redis://b:6379", False),
        ("redis://127.0.0.1:notaport/0", False),
        ("amqp://guest@rabbit//", False),
    ],
)
def test_only_urls_redis_py_reads_as_kombu_does_skip_celery(url: str, direct: bool) -> None:
    assert takes(url) is direct
