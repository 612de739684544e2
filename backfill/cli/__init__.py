"""The `growpanel-backfill` command line.

Exit codes: 0 success; 1 the run finished with rows in error, invalid or skipped (or `verify` found
differences); 2 the run is paused or failed (or a check could not complete); 3 a configuration error;
4 the command does not fit the run's state (a second active run, an unknown run).
"""

from __future__ import annotations

import time

# When this command began, before the heavier imports: `resume` leaves alone what a concurrent
# resume queued after this moment.
STARTED_AT = time.time()

import functools  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import click  # noqa: E402
import sqlalchemy.exc  # noqa: E402

from backfill.errors import ConfigError, RunStateError  # noqa: E402
from producers.source import SourceReadError  # noqa: E402

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CONFIG = 3
EXIT_STATE = 4


def fail(message: str, code: int) -> None:
    """One line on standard error, then exit with `code`."""
    click.echo(f"growpanel-backfill: {message}", err=True)
    sys.exit(code)


def _database_problem(exc: sqlalchemy.exc.SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if "does not exist" in text and ("relation" in text or "table" in text):
        return "the state database is not migrated: run `growpanel-backfill migrate` first"
    if isinstance(exc, sqlalchemy.exc.OperationalError):
        lines = [line for line in text.splitlines() if line.strip()]
        return f"DATABASE_URL: cannot use the state database: {lines[-1] if lines else first}"
    return f"state database error: {first}"


def handles_errors(func: F) -> F:
    """Turn our exceptions into one-line messages and exit codes (never a traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), EXIT_CONFIG)
        except SourceReadError as exc:
            fail(str(exc), EXIT_CONFIG)
        except RunStateError as exc:
            fail(str(exc), EXIT_STATE)
        except sqlalchemy.exc.ArgumentError as exc:
            fail(f"DATABASE_URL is malformed: {exc}", EXIT_CONFIG)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError) as exc:
            fail(_database_problem(exc), EXIT_CONFIG)
        except KeyboardInterrupt:
            fail("interrupted (a started run goes on in the workers)", 130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Import a billing history from PostgreSQL into GrowPanel, with a per-row audit."""


def _register() -> None:
    from backfill.cli import inspect_commands, ops_commands, run_commands, service_commands, verify_commands
    from sandbox.cli import sandbox_command

    for module in (run_commands, inspect_commands, service_commands, verify_commands, ops_commands):
        for command in module.COMMANDS:
            main.add_command(command)
    main.add_command(sandbox_command, "sandbox")


_register()
