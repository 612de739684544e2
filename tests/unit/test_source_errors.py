"""Which source errors a producer retries by itself (in a new snapshot), and which pause the run."""

from __future__ import annotations

import psycopg
import pytest

from producers.source import is_transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (psycopg.errors.AdminShutdown, True),  # pg_terminate_backend, a restart
        (psycopg.errors.SerializationFailure, True),  # also a hot standby's conflict with recovery
        (psycopg.errors.CannotConnectNow, True),  # the server is starting up
        (psycopg.OperationalError, True),  # the connection was lost (no SQLSTATE)
        (psycopg.errors.QueryCanceled, False),  # our own cancel when the lease is lost, or statement_timeout
        (psycopg.errors.ReadOnlySqlTransaction, False),  # the query tries to write: the user must fix it
        (psycopg.errors.UndefinedColumn, False),
    ],
)
def test_only_errors_that_go_away_by_themselves_are_retried(error: type[psycopg.Error], transient: bool) -> None:
    assert is_transient(error("x")) is transient
