"""Commands that look into a run's detail or clean it up: batch, report, prune."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import orjson

from console.cli import handles_errors
from console.cli import context as ctx
from models.states import STAGES


def _duration(context: click.Context, param: click.Parameter, value: str) -> timedelta:
    """`30d`, `12h`, `2w`, `90m`, `45s` -> timedelta, or a usage error naming the option."""
    from console.prune import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _json(doc: Any) -> str:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


@click.command()
@click.argument("run_id", type=int)
@click.argument("seq")
@click.option("--stage", type=click.Choice(STAGES), help="The stage, when SEQ exists in several.")
@click.option("--pass", "pass_no", type=click.IntRange(min=1), help="The pass (a retry numbers its batches from 1 again); the latest by default.")
@click.option("--json", "as_json", is_flag=True, help="The whole document, with full response bodies.")
@handles_errors
def batch(run_id: int, seq: str, stage: str | None, pass_no: int | None, as_json: bool) -> None:
    """Which rows batch SEQ of RUN sent and what came back: its rows' outcomes and every HTTP attempt.

    SEQ is the batch number shown by `errors` and in logs: 12, or 12.01 for a half of a batch split after a 413.
    """
    from console.batch_detail import batch_detail, detail_lines, parse_position

    try:
        position, part = parse_position(seq)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SEQ") from None
    settings = ctx.settings("database_url")
    with ctx.engine(settings).connect() as conn:
        try:
            doc = batch_detail(conn, run_id, position, part, stage, pass_no)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(_json(doc))
        return
    for line in detail_lines(doc):
        click.echo(line)


@click.command()
@click.option("--older-than", "older_than", callback=_duration, required=True, metavar="DURATION", help="Runs finished longer ago than this: 30d, 12h, 2w.")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="What was removed, per run, as JSON.")
@click.option("--chunk-size", default=10_000, show_default=True, type=click.IntRange(min=1), help="Rows deleted per transaction.")
@handles_errors
def prune(older_than: timedelta, dry_run: bool, as_json: bool, chunk_size: int) -> None:
    """Remove the per-row and per-attempt detail of runs that finished before --older-than; keep their summaries.

    Audit rows, their history, retry targets, HTTP attempts and batch payloads go; the run, its stages and
    every batch's counters stay, so `status RUN` and `runs` show the same counts. Running and paused runs
    are never touched.
    """
    from console.prune import prune as prune_runs
    from console.prune import report_lines

    settings = ctx.settings("database_url")
    engine = ctx.engine(settings)

    def progress(run: Any) -> None:
        if not as_json:
            click.echo(f"run {run.run_id}: {'counted' if dry_run else 'pruned'} ({run.audit} audit rows, {run.batch_attempts} attempts)", err=True)

    result = prune_runs(engine, older_than, dry_run=dry_run, chunk=chunk_size, progress=progress)
    if as_json:
        click.echo(_json(result.as_dict()))
        return
    for line in report_lines(result):
        click.echo(line)


@click.command()
@click.argument("run_id", type=int)
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False, writable=True, path_type=Path), help="The HTML file to write.")
@handles_errors
def report(run_id: int, html_path: Path) -> None:
    """Write a self-contained HTML report of RUN: summary, counts per stage, error reasons, charts.

    The file embeds its styles, data and chart script: it opens offline, and can be mailed or archived.
    """
    from console.report import write_report

    settings = ctx.settings("database_url")
    size = write_report(ctx.engine(settings), run_id, html_path)
    click.echo(str(html_path))
    click.echo(f"wrote the report of run {run_id} ({size / 1024:.0f} KB)", err=True)


