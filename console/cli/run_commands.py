"""Commands that start and steer runs: start, resume, cancel, retry."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import orjson

from console.cli import EXIT_CONFIG, STARTED_AT, fail, handles_errors
from console.cli import context as ctx
from backfill.errors import RunStateError
from models.states import RUN_FINISHED_STATES, RunState

EXIT_BY_STATE = {RunState.SUCCEEDED: 0, RunState.COMPLETED_WITH_ERRORS: 1}


def exit_code(state: str) -> int:
    """0 every row accepted, 1 finished with rejected rows, 2 paused, failed or cancelled."""
    return EXIT_BY_STATE.get(state, 2)


def _status_fetcher(engine: Any, run_id: int) -> Any:
    from console.status import status_document

    def fetch() -> dict[str, Any]:
        with engine.connect() as conn:
            return status_document(conn, run_id)

    return fetch


def wait_for_run(engine: Any, run_id: int, as_json: bool) -> dict[str, Any]:
    """Show progress on standard error until the run ends (or pauses); print JSON if asked."""
    from console.progress import watch

    doc = watch(_status_fetcher(engine, run_id))
    if doc["state"] == RunState.PAUSED and doc.get("paused_reason"):
        click.echo(f"run {run_id} paused: {doc['paused_reason']}", err=True)
    if as_json:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    return doc


def _client(settings: Any) -> Any:
    from backfill.api import GrowPanelClient

    return GrowPanelClient.from_settings(settings)


def reset_remote(settings: Any) -> None:
    """POST /data/data-sources/{id}/reset, or exit 2 with what the API said."""
    from backfill.errors import ApiError

    key = settings.growpanel_api_key.get_secret_value()
    client = _client(settings)
    try:
        client.reset_data_source(settings.growpanel_data_source_id, key)
    except ApiError as exc:
        fail(f"the reset of data source {settings.growpanel_data_source_id} failed: {exc}", 2)
    finally:
        client.close()


def poll_processing(settings: Any, timeout: float, interval: float = 1.0) -> dict[str, Any]:
    """Poll GET /data/data-sources/{id}/progress until GrowPanel reports done, stuck, aborted or idle.

    Transient failures (5xx, network) are shown and polled again until the timeout; an answer we cannot
    read, or a refused key, ends the wait with exit status 2 and one line.
    """
    from backfill.api import UnexpectedAnswer
    from backfill.errors import ApiError, FatalApiError, RejectedError, ThrottledError

    key = settings.growpanel_api_key.get_secret_value()
    data_source = settings.growpanel_data_source_id
    client = _client(settings)
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    try:
        while True:
            pause = interval
            try:
                progress = client.progress(data_source, key)
            except UnexpectedAnswer as exc:
                fail(f"--wait-processing: {exc}", 2)
            except (FatalApiError, RejectedError) as exc:
                fail(f"--wait-processing: GET /data/data-sources/{data_source}/progress: {exc}", 2)
            except ApiError as exc:
                if isinstance(exc, ThrottledError) and exc.retry_after is not None:
                    pause = max(interval, exc.retry_after)
                click.echo(f"GrowPanel processing: no answer yet ({exc})", err=True)
            else:
                last = progress.to_json()
                click.echo(f"GrowPanel processing: {_progress_line(progress)}", err=True)
                if progress.final:
                    return last
            if time.monotonic() + pause > deadline:
                return {**last, "phase": last.get("phase", "unknown"), "timed_out": True}
            time.sleep(pause)
    finally:
        client.close()


def _progress_line(progress: Any) -> str:
    """`processing (enqueued 10, processed 4, failed 0)`; a count the answer lacks shows as `?`."""

    def n(value: Any) -> str:
        return "?" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    return f"{progress.phase} (enqueued {n(progress.enqueued)}, processed {n(progress.processed)}, failed {n(progress.failed)})"


@click.command()
@click.option("--mapping", "mapping_file", type=click.Path(dir_okay=False), help="TOML file with one query per entity.")
@click.option("--wait", is_flag=True, help="Show live progress until the run ends; the exit code tells how it ended.")
@click.option("--json", "as_json", is_flag=True, help="With --wait: print the final `status --json` document.")
@click.option("--dry-run", is_flag=True, help="Read and check everything, record what would fail, send nothing.")
@click.option("--only-changed", is_flag=True, help="Skip rows whose payload equals the one last accepted.")
@click.option("--reset-data-source", is_flag=True, help="Reset the data source in GrowPanel first (asks to confirm).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation of --reset-data-source.")
@click.option("--wait-processing", is_flag=True, help="After the last stage, wait until GrowPanel has processed the data.")
@click.option("--processing-timeout", default=3600.0, show_default=True, help="Seconds --wait-processing waits at most.")
@click.option("--verify", "verify_rows", is_flag=True, help="Implies --wait: when the run has finished, check every row against GrowPanel (`verify`); differences make the exit code 1.")
@handles_errors
def start(
    mapping_file: str | None,
    wait: bool,
    as_json: bool,
    dry_run: bool,
    only_changed: bool,
    reset_data_source: bool,
    yes: bool,
    wait_processing: bool,
    processing_timeout: float,
    verify_rows: bool,
) -> None:
    """Check the configuration and the mapping, create a run and queue its first stage."""
    from backfill.runs import RunOptions, active_message, active_run, create_run
    from producers.mapping import check_mapping, load_mapping, role_warning
    from producers.source import fingerprint, source_connection

    required = ["source_database_url", "database_url", "growpanel_data_source_id"]
    if not dry_run:
        required += ["celery_broker_url", "growpanel_api_key"]
    settings = ctx.settings(*required)
    assert settings.source_database_url and settings.growpanel_data_source_id
    mapping = load_mapping(mapping_file)
    with source_connection(settings.source_database_url) as source:
        check_mapping(source, mapping)
        warning = role_warning(source, mapping)
        source_id = fingerprint(source)
    # psycopg alone until the producer is queued: SQLAlchemy only for what comes after (--wait, a dry run).
    state = ctx.state_connection(settings)
    if not dry_run:
        ctx.check_broker(settings)
    data_source = settings.growpanel_data_source_id
    options = RunOptions(
        data_source=data_source,
        api_url=settings.growpanel_api_url,
        batch_size=settings.batch_size,
        mapping=mapping.to_json(),
        mapping_file=mapping_file,
        dry_run=dry_run,
        only_changed=only_changed,
        reset_done=reset_data_source and not dry_run,
        source_fingerprint=source_id,
    )
    # Said once every other check has passed: a refused start stays one line.
    if warning and dry_run:
        click.echo(warning, err=True)
    if dry_run:
        state.close()
        _dry_run(settings, ctx.engine(settings), options, as_json)
        return
    with state:
        active = active_run(state, data_source)
        if active is not None:
            raise RunStateError(active_message(active, data_source))
        if reset_data_source:
            if not yes:
                if not sys.stdin.isatty():
                    fail("--reset-data-source needs --yes when there is no terminal to confirm on", EXIT_CONFIG)
                click.confirm(
                    f"This deletes every plan, customer and invoice of data source {data_source} in GrowPanel "
                    f"({settings.growpanel_api_url}) before importing again. Continue?",
                    abort=True,
                    err=True,
                )
            reset_data_source_now(settings)
        if warning:
            click.echo(warning, err=True)
        run_id = create_run(state, options)
    ctx.publisher(settings).publish_produce(run_id)
    if not (wait or wait_processing or verify_rows):
        click.echo(run_id)
        return
    click.echo(f"run {run_id} started for data source {data_source}", err=True)
    engine = ctx.engine(settings)
    doc = wait_for_run(engine, run_id, as_json=False)
    if wait_processing and doc["state"] in RUN_FINISHED_STATES:
        progress = poll_processing(settings, processing_timeout)
        doc["growpanel_processing"] = progress
    code = exit_code(doc["state"])
    if verify_rows and doc["state"] in RUN_FINISHED_STATES:
        from console.cli.verify_commands import verify_after_run

        verify_code, doc["verify"] = verify_after_run(run_id)
        code = max(code, verify_code)
    if as_json:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    sys.exit(code)


def reset_data_source_now(settings: Any) -> None:
    """Reset, saying so on standard error."""
    click.echo(f"resetting data source {settings.growpanel_data_source_id} in GrowPanel...", err=True)
    reset_remote(settings)
    click.echo("reset done", err=True)


def _dry_run(settings: Any, engine: Any, options: Any, as_json: bool) -> None:
    from console.dryrun import run_dry, summary_lines, top_reasons
    from backfill.runs import create_run, fail_run
    from console.status import status_document
    from producers.produce import ProducerContext

    run_id = create_run(engine, options)
    producer = ProducerContext.from_settings(
        settings, engine, options.data_source, owner=f"dry-run:{run_id}", on_checkpoint=lambda _run: None
    )
    try:
        run_dry(producer, run_id, options.only_changed)
    except BaseException:
        with engine.begin() as conn:
            fail_run(conn, run_id)
        raise
    with engine.connect() as conn:
        doc = status_document(conn, run_id)
    reasons = top_reasons(engine, run_id)
    for line in summary_lines(doc, reasons):
        click.echo(line, err=as_json)
    if as_json:
        doc["reasons"] = {
            stage: [{"outcome": r.outcome, "reason": r.reason, "count": r.count, "examples": r.examples} for r in items]
            for stage, items in reasons.items()
        }
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


@click.command()
@click.argument("run_id", type=int)
@click.option("--wait", is_flag=True, help="Show progress until the run ends.")
@click.option("--json", "as_json", is_flag=True, help="With --wait: print the final status document.")
@handles_errors
def resume(run_id: int, wait: bool, as_json: bool) -> None:
    """Re-queue every batch of RUN without a final outcome (after a pause, a cancel or a lost broker)."""
    from backfill.dispatch import resume_run

    settings = ctx.settings("database_url", "celery_broker_url")
    engine = ctx.engine(settings)
    ctx.check_broker(settings)
    result = resume_run(engine, run_id, ctx.publisher(settings), settings.max_in_flight, STARTED_AT)
    if result.state != RunState.RUNNING:
        click.echo(f"run {run_id} is {result.state}: nothing to resume", err=as_json)
        return
    click.echo(
        f"run {run_id} resumed: {result.requeued} batches queued again"
        + (", producer restarted" if result.producer_restarted else ""),
        err=as_json,
    )
    if wait:
        doc = wait_for_run(engine, run_id, as_json)
        sys.exit(exit_code(doc["state"]))


@click.command()
@click.argument("run_id", type=int)
@handles_errors
def cancel(run_id: int) -> None:
    """Stop queueing batches of RUN; batches being posted finish. `resume` can continue it later."""
    from backfill.runs import cancel_run

    settings = ctx.settings("database_url")
    cancel_run(ctx.engine(settings), run_id)
    click.echo(f"run {run_id} cancelled; batches already being posted finish, `resume {run_id}` continues it")


@click.command()
@click.argument("run_id", type=int)
@click.option("--wait", is_flag=True, help="Show progress until the retry pass ends.")
@click.option("--json", "as_json", is_flag=True, help="With --wait: print the final status document.")
@handles_errors
def retry(run_id: int, wait: bool, as_json: bool) -> None:
    """Send again, from the source, the rows of RUN that ended error, invalid or skipped."""
    from sqlalchemy import text

    from backfill.runs import prepare_retry

    settings = ctx.settings("database_url", "celery_broker_url", "source_database_url")
    engine = ctx.engine(settings)
    ctx.check_broker(settings)
    counts = prepare_retry(engine, run_id)
    if not any(counts.values()):
        click.echo(f"run {run_id} has no rows in error, invalid or skipped: nothing to retry")
        return
    ctx.publisher(settings).publish_produce(run_id)
    click.echo(
        f"run {run_id}: retrying {counts['plans']} plans, {counts['customers']} customers, {counts['invoices']} invoices",
        err=as_json,
    )
    if not wait:
        return
    doc = wait_for_run(engine, run_id, as_json=False)
    with engine.connect() as conn:
        missing = conn.execute(
            text(
                """
                SELECT entity, external_id FROM retry_targets t JOIN runs r ON r.id = t.run_id AND t.pass_no = r.pass_no
                WHERE t.run_id = :r AND NOT t.found ORDER BY entity, external_id
                """
            ),
            {"r": run_id},
        ).all()
    if missing:
        click.echo(f"{len(missing)} rows are no longer in the source (their previous outcome is kept):", err=True)
        for row in missing[:50]:
            click.echo(f"  {row.entity} {row.external_id}", err=True)
    doc["missing_from_source"] = [{"entity": r.entity, "id": r.external_id} for r in missing]
    if as_json:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    sys.exit(exit_code(doc["state"]))


