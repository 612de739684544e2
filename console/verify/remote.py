"""The client's read endpoints with the importer's retry policy and rate limit.

Requests are built and answers classified and parsed by `GrowPanelClient` (backfill.api); this adds
the same policy data as the workers (`RETRY_BACKOFF`, `RETRY_JITTER`, `Retry-After`, `BATCH_TIME_BUDGET`,
`GROWPANEL_MAX_RPS`), applied to one request at a time: a check has nothing to do while it waits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from backfill.api import GrowPanelClient, ListingPage, MrrQuery, MrrReport, UnexpectedAnswer, backoff_delay
from backfill.errors import ApiError, AuthError, FatalApiError, RetriableApiError, ThrottledError
from backfill.settings import Settings
from console.verify.errors import CheckIncomplete
from console.verify.pacing import Pacer


T = TypeVar("T")


class RemoteApi:
    """Paced, retried JSON GETs for one data source's key."""

    def __init__(
        self,
        client: GrowPanelClient,
        api_key: str,
        settings: Settings,
        pacer: Pacer,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.api_key = api_key
        self.backoff = settings.retry_backoff or [1.0]
        self.jitter = settings.retry_jitter
        self.budget = settings.batch_time_budget
        self.pacer = pacer
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.requests = 0
        self.retries = 0

    def listing(self, kind: str, data_source: str, limit: int, offset: int | None = None) -> ListingPage:
        """One page of GET /data/{kind}."""
        return self.call(f"GET /data/{kind}", lambda: self.client.listing(kind, data_source, self.api_key, limit, offset))

    def mrr_report(self, query: MrrQuery) -> MrrReport:
        """GET /reports/mrr for `query`."""
        return self.call("GET /reports/mrr", lambda: self.client.mrr_report(query, self.api_key))

    def call(self, label: str, attempt: Callable[[], T]) -> T:
        """The parsed answer of `attempt`; CheckIncomplete once retries or the time budget are used up."""
        started = time.monotonic()
        failures = 0
        throttles = 0
        while True:
            self.pacer.wait()
            self.requests += 1
            try:
                return attempt()
            except ThrottledError as exc:
                throttles += 1
                delay = exc.retry_after if exc.retry_after is not None else self._delay(throttles)
                # The pacer holds this and every other request back for the delay (workers too when shared).
                self.pacer.pause(delay)
                pause = 0.0
                reason = str(exc)
            except RetriableApiError as exc:
                failures += 1
                if failures > len(self.backoff):
                    raise CheckIncomplete(f"{label} failed after {failures} attempts: {exc}") from None
                delay = pause = self._delay(failures)
                reason = str(exc)
            except UnexpectedAnswer as exc:
                raise CheckIncomplete(str(exc)) from None  # it names the endpoint and the field
            except AuthError as exc:
                raise CheckIncomplete(f"{label}: the API refused the key ({exc})") from None
            except FatalApiError as exc:
                raise CheckIncomplete(f"{label}: {exc}") from None
            except ApiError as exc:
                raise CheckIncomplete(f"{label}: {exc}") from None
            if time.monotonic() - started + delay > self.budget:
                raise CheckIncomplete(
                    f"{label} did not succeed within BATCH_TIME_BUDGET ({self.budget:g} s): {reason}"
                )
            self.retries += 1
            if pause > 0:
                self.sleep(pause)

    def _delay(self, n: int) -> float:
        """The delay before retry number `n` (1-based), as the workers compute it."""
        return backoff_delay(self.backoff, n, self.jitter, self.rng)
