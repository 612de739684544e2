"""`verify`: does GrowPanel hold exactly what the source says? Rows always, months with `--mrr`.

Exit status: 0 everything matches, 1 differences, 2 the check could not complete (the API after its
retries, a refused key, an answer it cannot read, a listing no strategy reads whole, the source, an
unknown run), 3 a
configuration error (an unset or malformed variable), like every other command.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from console.cli import EXIT_CONFIG, fail
from console.cli import context as ctx
from backfill.errors import BackfillError, ConfigError

EXIT_INCOMPLETE = 2


def _percent(context: click.Context, param: click.Parameter, value: str) -> float:
    """A non-negative percentage written `1`, `1%` or `0.5 %`."""
    try:
        number = float(value.strip().removesuffix("%").strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a percentage (like 1 or 0.5%)") from None
    if not number >= 0:
        raise click.BadParameter(f"{value!r} must not be negative")
    return number


@click.command()
@click.argument("run_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@click.option("--mrr", is_flag=True, help="Also compare MRR month by month with GET /reports/mrr (rules: docs/mrr.md).")
@click.option("--tolerance", default="1%", show_default=True, callback=_percent, help="With --mrr: flag months whose MRR differs by more than this.")
@click.option("--examples", "max_examples", type=click.IntRange(0, 10_000), default=5, show_default=True, help="Examples shown of each kind of difference, per entity.")
@click.option("--page-size", type=click.IntRange(1, 100_000), default=1000, show_default=True, help="Rows asked for per listing request (`limit`); lower it for an API that caps pages lower.")
@click.option("--drill-down", "drill_customers", type=click.IntRange(0, 100), default=5, show_default=True, help="With --mrr: customers compared one by one (customer=ID) in each month beyond the tolerance; 0 turns the drill-down off.")
def verify(run_id: int | None, as_json: bool, mrr: bool, tolerance: float, max_examples: int, page_size: int, drill_customers: int) -> None:
    """Compare every plan, customer and invoice GrowPanel stores with the source, as RUN read it.

    RUN defaults to the latest run of GROWPANEL_DATA_SOURCE_ID. Rows the run rejected are reported as
    expected-missing, not as differences.
    """
    from console.verify.check import CheckOptions

    options = CheckOptions(
        months=mrr, tolerance_percent=tolerance, max_examples=max_examples, page_size=page_size, drill_customers=drill_customers
    )
    report = _checked(lambda: _run(run_id, options))
    if as_json:
        click.echo(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        from console.verify.report import text_lines

        for line in text_lines(report):
            click.echo(line)
    sys.exit(report.exit_code)


def _run(run_id: int | None, options: Any) -> Any:
    from console.verify.check import run_check
    from console.verify.target import resolve_target

    settings = ctx.settings("database_url", "source_database_url")
    engine = ctx.engine(settings)
    try:
        target = resolve_target(engine, settings, run_id)
    finally:
        engine.dispose()
    return run_check(settings, target, options)


def _attempt(work: Any) -> tuple[Any, str | None]:
    """(report, None), or (None, why the check could not finish) for every failure we can name."""
    import psycopg
    import sqlalchemy.exc

    try:
        return work(), None
    except ConfigError:
        raise
    except BackfillError as exc:
        return None, str(exc)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        from console.cli import _database_problem

        return None, _database_problem(exc)
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, f"database error: {first}"


def _checked(work: Any) -> Any:
    """The report of `work`, or one line on stderr and exit status 2."""
    try:
        report, reason = _attempt(work)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    if reason is not None:
        fail(f"verify could not complete: {reason}", EXIT_INCOMPLETE)
    return report


def verify_after_run(run_id: int) -> tuple[int, dict[str, Any]]:
    """`start --verify`: check the rows of a finished run, report on stderr; (exit status, JSON part)."""
    from console.verify.check import CheckOptions
    from console.verify.report import text_lines

    click.echo(f"verifying run {run_id} against GrowPanel...", err=True)
    report, reason = _attempt(lambda: _run(run_id, CheckOptions()))
    if reason is not None:
        click.echo(f"growpanel-backfill: verify could not complete: {reason}", err=True)
        return EXIT_INCOMPLETE, {"complete": False, "error": reason}
    for line in text_lines(report):
        click.echo(line, err=True)
    return report.exit_code, {"complete": True, **report.to_json()}


