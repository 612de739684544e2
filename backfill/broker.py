"""Task messages written straight to Redis in Celery's protocol, for the command line (issue 13).

`start` sends one `produce` message; importing and configuring Celery to send it cost the CLI ~0.1 s of
the 0.5 s it has to get its first request posted. `RedisPublisher` writes, with redis-py alone, the
envelope Celery 5 writes through kombu's Redis transport with `workers.celery_app.celery_config`:
task protocol 2, JSON, the body base64-encoded in a JSON envelope LPUSHed on the queue's list, which
the workers take with BRPOP (first in, first out). The workers keep publishing through Celery
(`workers.publisher`); `tests/unit/test_broker.py` compares the two envelopes field by field, so a
Celery that changes its protocol fails that test, not a run.

What this relies on, true of our Celery configuration:
- priority 0 (we set none): kombu's Redis transport keeps priority 0 on the list named after the
  queue, and other priorities on `queue\\x06\\x16N`;
- no `global_keyprefix` in `broker_transport_options` (kombu would prefix every key with it);
- the default (nameless) exchange: Celery turns a direct exchange into it, so the message goes to the
  queue's list without the exchange's bindings, which every worker declares when it starts consuming.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from backfill.messages import BATCH_QUEUE, PRODUCE_QUEUE, PUBLISH_RETRY, BatchRef

log = logging.getLogger(__name__)

# Schemes both redis-py and kombu read alike (kombu has no `unix`, so workers never use one; a CLI
# given one simply publishes there). `redis+socket://`, `sentinel://` and failover lists are Celery's.
_SCHEMES = ("redis", "rediss", "unix")


def _delays() -> list[float]:
    """The waits of kombu's `ensure` under PUBLISH_RETRY: 0.2, 0.7, 1.2 s."""
    start, step, top = PUBLISH_RETRY["interval_start"], PUBLISH_RETRY["interval_step"], PUBLISH_RETRY["interval_max"]
    return [min(start + n * step, top) for n in range(int(PUBLISH_RETRY["max_retries"]))]


def takes(url: str) -> bool:
    """Whether `RedisPublisher` reaches the very Redis database Celery would for this broker URL.

    A query string is left to Celery: the two clients do not read its options alike (redis-py takes
    `?db=N` over the path's number, kombu refuses it), and a message in another database is lost.
    """
    try:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or parts.query or ";" in url:
            return False
        redis.Redis.from_url(url).close()  # parses only: a bad port or database number is a ValueError
    except ValueError:
        return False
    return True


def envelope(
    task: str,
    args: list[Any],
    queue: str,
    shadow: str,
    countdown: float | None = None,
    reply_to: str = "",
) -> dict[str, Any]:
    """The message `send_task(task, args=args, queue=queue, shadow=shadow, countdown=countdown)` stores.

    Field for field what celery/app/amqp.py `as_task_v2` and kombu's virtual channel write, in their
    order; the ids are new for every message, as Celery makes them.
    """
    task_id = str(uuid.uuid4())
    eta = None
    if countdown:  # Celery's test: a countdown of 0 sends no eta either
        eta = (datetime.now(timezone.utc) + timedelta(seconds=countdown)).isoformat()
    body = json.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    headers = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": shadow,
        "eta": eta,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        # Celery's saferepr, which for ids and short names is repr.
        "argsrepr": repr(args),
        "kwargsrepr": "{}",
        "origin": f"gen{os.getpid()}@{socket.gethostname()}",
        # What Celery writes from a process that has not loaded the tasks (the CLI): no result is kept
        # anyway (no result backend, `task_ignore_result` on the workers).
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    return {
        "body": base64.b64encode(body.encode()).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": reply_to,
            "delivery_mode": 2,  # persistent, kombu's default
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


class RedisPublisher:
    """The `backfill.messages.Publisher` over redis-py: the messages `workers.publisher.CeleryPublisher` sends."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        # Celery puts its app's id for this thread here, for replies nobody asks for (no result backend).
        self.reply_to = str(uuid.uuid4())

    @classmethod
    def from_url(cls, url: str) -> RedisPublisher:
        """A publisher for CELERY_BROKER_URL (see `takes`); the URL is kept only inside redis-py's pool."""
        # redis-py's own retries are off: PUBLISH_RETRY is the one policy, as for CeleryPublisher.
        return cls(redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5, retry=Retry(NoBackoff(), 0)))

    def publish_batch(self, ref: BatchRef, countdown: float | None = None) -> None:
        """One `post_batch` message; a failure to publish is logged (the sweeper re-queues the batch)."""
        message = envelope(
            "post_batch",
            [ref.batch_id, ref.run_id, ref.stage, ref.seq, ref.part],
            BATCH_QUEUE,
            f"post_batch {ref.label}",
            countdown,
            self.reply_to,
        )
        try:
            self._push(BATCH_QUEUE, message)
        except Exception as exc:  # noqa: BLE001 - the database still has the batch as queued
            log.warning("could not publish batch %s (%s); the sweeper will re-queue it", ref.label, type(exc).__name__)

    def publish_produce(self, run_id: int) -> None:
        """The producer task of a run."""
        message = envelope("produce", [run_id], PRODUCE_QUEUE, f"produce run {run_id}", reply_to=self.reply_to)
        try:
            self._push(PRODUCE_QUEUE, message)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not publish the producer of run %s (%s); the sweeper will retry", run_id, type(exc).__name__)

    def _push(self, queue: str, message: dict[str, Any]) -> None:
        """LPUSH as kombu's `_put` does, retried on lost connections as kombu's `ensure` does."""
        payload = json.dumps(message)
        for delay in [*_delays(), None]:
            try:
                self.client.lpush(queue, payload)
                return
            except (redis.ConnectionError, redis.TimeoutError):
                if delay is None:
                    raise
                time.sleep(delay)

    def close(self) -> None:
        """Close the connections."""
        self.client.close()
