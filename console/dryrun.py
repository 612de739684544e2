"""`start --dry-run`: the whole source read and checked exactly as a run would, nothing sent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from backfill import runs, store
from backfill.audit import counters, write_outcomes
from backfill.manifest import load_manifest
from console.reasons import Reason, rejected_reasons
from console.safe_text import visible
from models.states import STAGES
from producers.produce import ProducerContext, produce_run
from workers.decide import local_outcomes


def run_dry(ctx: ProducerContext, run_id: int, only_changed: bool) -> None:
    """Produce every stage in this process, then record the outcomes that are known without sending."""
    if not produce_run(ctx, run_id):
        raise RuntimeError(f"dry run {run_id}: could not take the producer lease")
    engine = ctx.engine
    with engine.connect() as conn:
        data_source = conn.execute(text("SELECT data_source FROM runs WHERE id = :r"), {"r": run_id}).scalar_one()
    for stage in STAGES:
        _resolve_stage(engine, run_id, stage, data_source, only_changed)
    with engine.begin() as conn:
        runs.open_stage(conn, run_id, STAGES[-1])
        runs.finish_run(conn, run_id)


def _resolve_stage(engine: Engine, run_id: int, stage: str, data_source: str, only_changed: bool) -> None:
    # Stage by stage, like a real run: invoices see which customers and plans this run rejected.
    with engine.connect() as conn:
        batch_ids = list(
            conn.execute(
                text("SELECT id FROM batches WHERE run_id = :r AND stage = :s ORDER BY seq"), {"r": run_id, "s": stage}
            ).scalars()
        )
    for batch_id in batch_ids:
        with engine.begin() as conn:
            manifest = conn.execute(text("SELECT manifest FROM batches WHERE id = :b"), {"b": batch_id}).scalar_one()
            entries = load_manifest(manifest)
            local = local_outcomes(conn, run_id, stage, data_source, entries, only_changed)
            outcomes = [local[i] for i in sorted(local)]
            store.set_counts(conn, batch_id, counters(outcomes))
            write_outcomes(
                conn,
                run_id=run_id,
                entity=stage,
                batch_id=batch_id,
                pass_no=1,
                outcomes=outcomes,
                attempts=0,
                sent_at=None,
                answered_at=None,
            )
    with engine.begin() as conn:
        runs.close_stage(conn, run_id, stage, store.stage_counts(conn, run_id)[stage])


def top_reasons(engine: Engine, run_id: int, limit: int = 5) -> dict[str, list[Reason]]:
    """The most frequent reasons per stage, with three example ids each."""
    with engine.connect() as conn:
        reasons = rejected_reasons(conn, run_id)
    out: dict[str, list[Reason]] = {stage: [] for stage in STAGES}
    for reason in reasons:
        if len(out[reason.entity]) < limit:
            out[reason.entity].append(reason)
    return out


def summary_lines(status: dict[str, Any], reasons: dict[str, list[Reason]]) -> list[str]:
    """The human report of a dry run."""
    lines = [f"Dry run {status['run_id']} for data source {visible(status['data_source'])}: nothing was sent."]
    for stage in STAGES:
        s = status["stages"][stage]
        lines.append(
            f"{stage}: {s['rows']} rows, {s['would_send']} would be sent, {s['invalid']} invalid, {s['skipped']} skipped"
            + (f", {s['by_status']['unchanged (skipped locally)']} unchanged" if s["by_status"]["unchanged (skipped locally)"] else "")
        )
        for reason in reasons[stage]:
            examples = ", ".join(visible(e) for e in reason.examples)
            lines.append(f"  {reason.count:>7} {reason.outcome}: {visible(reason.reason)}  (e.g. {examples})")
    return lines
