"""Everything one sandbox instance holds in memory, and the resets over it."""

from __future__ import annotations

from sandbox.config import SandboxConfig
from sandbox.faults import FaultInjector
from sandbox.ordercheck import OrderCheck
from sandbox.progress import ProgressBoard
from sandbox.ratelimit import RateLimiter
from sandbox.requestlog import RequestLog
from sandbox.store import Store


class SandboxState:
    """The store, the order check, progress, faults, limits and request log of one app."""

    def __init__(self, config: SandboxConfig) -> None:
        """Build empty state from the start-up settings."""
        self.config = config
        self.keys = dict(config.keys)
        self.store = Store(config.store)
        self.order = OrderCheck()
        self.progress = ProgressBoard(config.progress_delay)
        self.faults = FaultInjector(config.faults)
        self.limiter = RateLimiter(config.rate_limit)
        self.max_batch = config.max_batch
        self.requests = RequestLog(config.request_log_limit)
        self.wire = config.wire

    def reset_source(self, data_source: str) -> None:
        """Forget one data source's objects, order-check state, violations and progress."""
        self.store.drop(data_source)
        self.order.drop(data_source)
        self.progress.drop(data_source)

    def reset_all(self) -> None:
        """Back to the start-up state: no data, no log, start-up faults and limits."""
        self.store.clear()
        self.order.clear()
        self.progress.clear()
        self.requests.clear()
        self.faults.replace(self.config.faults)
        self.limiter.set_rate(self.config.rate_limit)
        self.max_batch = self.config.max_batch
        self.wire = self.config.wire
