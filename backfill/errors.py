"""The importer's exceptions, grouped by what the caller should do about them.

BackfillError
├── ConfigError            a setting, the mapping or the source is unusable: stop before sending (exit 3)
├── RunStateError          the command does not fit the run's state (a second active run, an unknown run)
├── LeaseLost              a batch's or a producer's lease went to someone else: drop the work, they do it
└── ApiError               something the GrowPanel API did, classified once in `backfill.api.classify`
    ├── RetriableApiError  5xx, network errors, timeouts, a broken 200: retry with backoff
    ├── ThrottledError     429: wait `retry_after`, do not use up an attempt
    ├── RejectedError      400/422 and other 4xx: record the rows as `error`, never retry
    ├── TooLargeError      413: split the batch in halves
    └── FatalApiError      every batch would get this answer (wrong URL): pause the run
        └── AuthError      401/403: the key is wrong for every batch, pause the run
"""

from __future__ import annotations


class BackfillError(Exception):
    """Root of the importer's own exceptions."""


class ConfigError(BackfillError):
    """A setting, the mapping file or the source query is unusable."""


class RunStateError(BackfillError):
    """The command does not fit the state of the run (or the run does not exist)."""


class LeaseLost(BackfillError):
    """The lease (of a batch, or of a run's producer) is no longer ours: another worker does the work now."""


class ApiError(BackfillError):
    """A failed exchange with the GrowPanel API."""

    def __init__(self, message: str, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class RetriableApiError(ApiError):
    """Transient: 5xx, a network error, a timeout or an unreadable 200."""


class ThrottledError(ApiError):
    """429: the API asked us to slow down for `retry_after` seconds (None when it did not say)."""

    def __init__(self, message: str, retry_after: float | None, status: int = 429, body: str | None = None) -> None:
        super().__init__(message, status, body)
        self.retry_after = retry_after


class RejectedError(ApiError):
    """A permanent 4xx for this payload: the rows are recorded as `error`."""


class TooLargeError(ApiError):
    """413: the batch must be split."""


class FatalApiError(ApiError):
    """An answer every batch would get (404 on the endpoint, a redirect): pause the run."""


class AuthError(FatalApiError):
    """401/403: the key is refused; every batch would fail the same way."""
