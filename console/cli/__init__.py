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
import importlib  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import click  # noqa: E402

from backfill.errors import ConfigError, RunStateError  # noqa: E402

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CONFIG = 3
EXIT_STATE = 4
# The keys of the settings this command built (console.cli.context.settings adds them): `fail` redacts them.
SECRETS: list[str] = []


def fail(message: str, code: int) -> None:
    """One line on standard error (keys and database passwords redacted), then exit with `code`."""
    from backfill.redact import redact

    click.echo(f"growpanel-backfill: {redact(message, SECRETS)}", err=True)
    sys.exit(code)


def _database_problem(exc: Exception) -> str:
    import sqlalchemy.exc

    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if "does not exist" in text and ("relation" in text or "table" in text):
        return "the state database is not migrated: run `growpanel-backfill migrate` first"
    if isinstance(exc, sqlalchemy.exc.OperationalError):
        return f"DATABASE_URL: cannot use the state database: {connection_failure(text)}"
    return f"state database error: {first}"


def connection_failure(text: str) -> str:
    """The line of a libpq connection error that names the server and why ("... port 5432 failed:
    Connection refused"), else its first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    failed = [line for line in lines if "failed:" in line]
    return (failed or lines or ["cannot connect"])[0]


def _is_database_error(exc: Exception) -> bool:
    # SQLAlchemy is imported only by the commands that use it; if it is not loaded, this is not its error.
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, (sa_exc.OperationalError, sa_exc.ProgrammingError))


def handles_errors(func: F) -> F:
    """Turn our exceptions into one-line messages and exit codes (never a traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), EXIT_CONFIG)
        except RunStateError as exc:
            fail(str(exc), EXIT_STATE)
        except KeyboardInterrupt:
            fail("interrupted (a started run goes on in the workers)", 130)
        except Exception as exc:
            sa_exc = sys.modules.get("sqlalchemy.exc")
            db = sys.modules.get("models.db")
            if db is not None and isinstance(exc, db.DatabaseUrlError):
                fail(str(exc), EXIT_CONFIG)
            if sa_exc is not None and isinstance(exc, sa_exc.ArgumentError):
                fail(f"DATABASE_URL is malformed: {exc}", EXIT_CONFIG)
            if _is_database_error(exc):
                fail(_database_problem(exc), EXIT_CONFIG)
            raise

    return wrapper  # type: ignore[return-value]


# Commands are imported when used: `status` should not pay for the sandbox's web server or Celery.
_COMMANDS = {
    "migrate": "console.cli.service_commands:migrate",
    "worker": "console.cli.service_commands:worker",
    "flower": "console.cli.service_commands:flower",
    "start": "console.cli.run_commands:start",
    "resume": "console.cli.run_commands:resume",
    "cancel": "console.cli.run_commands:cancel",
    "retry": "console.cli.run_commands:retry",
    "status": "console.cli.inspect_commands:status",
    "errors": "console.cli.inspect_commands:errors",
    "runs": "console.cli.inspect_commands:runs",
    "batch": "console.cli.ops_commands:batch",
    "prune": "console.cli.ops_commands:prune",
    "report": "console.cli.ops_commands:report",
    "verify": "console.cli.verify_commands:verify",
    "sandbox": "sandbox.cli:sandbox_command",
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # The sandbox's web server is an optional extra: say how to get it instead of a traceback.
            if cmd_name == "sandbox" and exc.name in {"starlette", "uvicorn"}:
                fail("the sandbox needs its extra: pip install 'growpanel-backfill[sandbox]'", EXIT_CONFIG)
            raise
        command: click.Command = getattr(loaded, attr)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Import a billing history from PostgreSQL into GrowPanel, with a per-row audit."""
