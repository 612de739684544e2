"""Commands that read runs: status, errors, runs."""

from __future__ import annotations

import sys

import click
import orjson

from console.cli import handles_errors
from console.cli import context as ctx
from models.states import STAGES


@click.command()
@click.argument("run_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="The status document as JSON.")
@click.option("--watch", is_flag=True, help="Show live progress until the run ends.")
@handles_errors
def status(run_id: int | None, as_json: bool, watch: bool) -> None:
    """State of RUN (the latest if omitted) and, per stage, its row counts."""
    from console.cli.run_commands import exit_code, wait_for_run
    from console.progress import outcome_line
    from console.status import latest_run_id, status_document

    settings = ctx.settings("database_url")
    engine = ctx.engine(settings)
    with engine.connect() as conn:
        run_id = run_id if run_id is not None else latest_run_id(conn)
        doc = status_document(conn, run_id)
    if watch:
        doc = wait_for_run(engine, run_id, as_json)
        sys.exit(exit_code(doc["state"]))
    if as_json:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    flags = " (dry run)" if doc["dry_run"] else ""
    click.echo(f"run {doc['run_id']}{flags}: {doc['state']}  data source {doc['data_source']}  pass {doc['pass']}")
    click.echo(f"started {doc['started_at']}  finished {doc['finished_at'] or '-'}")
    if doc["paused_reason"]:
        click.echo(f"reason: {doc['paused_reason']}")
    click.echo(f"{'stage':<10} {'state':<8} {'rows':>10} {'accepted':>10} {'error':>8} {'invalid':>8} {'skipped':>8} {'pending':>10}")
    for stage in STAGES:
        s = doc["stages"][stage]
        click.echo(
            f"{stage:<10} {s['state']:<8} {s['rows']:>10} {s['accepted']:>10} {s['error']:>8} {s['invalid']:>8} "
            f"{s['skipped']:>8} {s['pending']:>10}"
        )
    click.echo(outcome_line(doc))


@click.command()
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="A JSON list of {entity, id, outcome, message, batch}.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line.")
@handles_errors
def errors(run_id: int, as_json: bool, as_csv: bool) -> None:
    """Every row of RUN whose outcome is error, invalid or skipped, with its message."""
    from console.status import errors_csv, iter_errors

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    settings = ctx.settings("database_url")
    engine = ctx.engine(settings)
    out = sys.stdout
    with engine.connect() as conn:
        from sqlalchemy import text

        pruned = conn.execute(text("SELECT pruned_at FROM runs WHERE id = :r"), {"r": run_id}).scalar()
        if pruned is not None:
            click.echo(f"run {run_id} was pruned at {pruned:%Y-%m-%d %H:%M}: its per-row outcomes are gone", err=True)
        rows = iter_errors(conn, run_id)
        if as_csv:
            for line in errors_csv(rows):
                out.write(line)
        elif as_json:
            # Streamed as a JSON array, so a million rejected rows never sit in memory.
            out.write("[")
            for n, row in enumerate(rows):
                out.write(("," if n else "") + "\n  " + orjson.dumps(row).decode())
            out.write("\n]\n")
        else:
            count = 0
            for row in rows:
                count += 1
                out.write(f"{row['entity']:<10} {row['id']:<24} {row['outcome']:<8} batch {row['batch'] or '-':<6} {row['message']}\n")
            click.echo(f"{count} rows rejected in run {run_id}", err=True)


@click.command()
@click.option("--limit", default=20, show_default=True, help="How many runs to list.")
@handles_errors
def runs(limit: int) -> None:
    """Recent runs, one line each."""
    from console.status import runs_listing

    settings = ctx.settings("database_url")
    with ctx.engine(settings).connect() as conn:
        listing = runs_listing(conn, limit)
    if not listing:
        click.echo("no runs yet")
        return
    for r in listing:
        started = r["started_at"].strftime("%Y-%m-%d %H:%M:%S") if r["started_at"] else "-"
        dry = " dry" if r["dry_run"] else ""
        click.echo(
            f"{r['id']:>6}  {r['state']:<22} {r['data_source']:<20} started {started}  rows {r['rows']:>9}  "
            f"rejected {r['rejected']:>7}  pass {r['pass_no']}{dry}"
        )


