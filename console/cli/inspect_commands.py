"""Commands that read runs: status, errors, runs.

They read through `context.reader()` (libpq, no SQLAlchemy, no pydantic) so that they answer within
150 ms on a big run; `status --watch` is the exception (it polls through SQLAlchemy for minutes).
"""

from __future__ import annotations

import sys

import click

from console.cli import handles_errors
from console.cli import context as ctx


def _json(doc: object) -> str:
    import orjson

    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


@click.command()
@click.argument("run_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="The status document as JSON.")
@click.option("--watch", is_flag=True, help="Show live progress until the run ends.")
@handles_errors
def status(run_id: int | None, as_json: bool, watch: bool) -> None:
    """State of RUN (the latest if omitted) and, per stage, its row counts."""
    from console.status import latest_run_id, status_document, status_lines

    with ctx.reader() as conn:
        run_id = run_id if run_id is not None else latest_run_id(conn)
        doc = status_document(conn, run_id)
    if watch:
        from console.cli.run_commands import exit_code, wait_for_run

        doc = wait_for_run(ctx.engine(ctx.settings("database_url")), run_id, as_json)
        sys.exit(exit_code(doc["state"]))
    if as_json:
        click.echo(_json(doc))
        return
    for line in status_lines(doc):
        click.echo(line)


@click.command()
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="A JSON list of {entity, id, outcome, message, batch}.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line; cells starting with = + - @ get a leading '.")
@handles_errors
def errors(run_id: int, as_json: bool, as_csv: bool) -> None:
    """Every row of RUN whose outcome is error, invalid or skipped, with its message.

    Control characters in ids and messages are shown as escapes (\\x1b); --json keeps them exact.
    """
    from console.status import error_line, errors_csv, iter_errors, pruned_at

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    out = sys.stdout
    with ctx.reader() as conn:
        pruned = pruned_at(conn, run_id)
        if pruned is not None:
            click.echo(f"run {run_id} was pruned at {pruned:%Y-%m-%d %H:%M}: its per-row outcomes are gone", err=True)
        rows = iter_errors(conn, run_id)
        if as_csv:
            for line in errors_csv(rows):
                out.write(line)
        elif as_json:
            import orjson

            # Streamed as a JSON array, so a million rejected rows never sit in memory.
            out.write("[")
            for n, row in enumerate(rows):
                out.write(("," if n else "") + "\n  " + orjson.dumps(row).decode())
            out.write("\n]\n")
        else:
            count = 0
            for row in rows:
                count += 1
                out.write(error_line(row))
            click.echo(f"{count} rows rejected in run {run_id}", err=True)


@click.command()
@click.option("--limit", default=20, show_default=True, help="How many runs to list.")
@handles_errors
def runs(limit: int) -> None:
    """Recent runs, one line each."""
    from console.safe_text import visible
    from console.status import runs_listing

    with ctx.reader() as conn:
        listing = runs_listing(conn, limit)
    if not listing:
        click.echo("no runs yet")
        return
    for r in listing:
        started = r["started_at"].strftime("%Y-%m-%d %H:%M:%S") if r["started_at"] else "-"
        dry = " dry" if r["dry_run"] else ""
        click.echo(
            f"{r['id']:>6}  {r['state']:<22} {visible(r['data_source']):<20} started {started}  rows {r['rows']:>9}  "
            f"rejected {r['rejected']:>7}  pass {r['pass_no']}{dry}"
        )


