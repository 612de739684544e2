"""What each step of posting one batch costs in CPU, measured one step at a time (minimum of N).

    .venv/bin/python -m bench.steps --rows 500 --repeat 30

A batch of invoices is produced for real, then each step `workers.posting.process_batch` takes is
timed on its own with `time.process_time` (this thread's CPU, not the sandbox's or Postgres's), taking
the minimum over `--repeat` tries so that a busy machine does not inflate it. The steps are called
exactly as `process_batch` calls them; the database writes are rolled back after each try.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

from backfill.manifest import load_manifest
from bench.inprocess import DATA_SOURCE, KEY, harness
from bench.seeder import SourceShape, mapping_text, seed_source
from bench.services import Database


def cpu_of(step: Callable[[], Any], repeat: int) -> float:
    """Minimum CPU seconds of one call over `repeat` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        step()
        best = min(best, time.process_time() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    """Time every step of one batch and print them with their share."""
    from backfill.api import classify, redact
    from backfill import store
    from backfill.audit import Outcome, clean_text, counters, status_counters, write_outcomes
    from backfill.dispatch import BatchRef, _advance_locked
    from workers.decide import local_outcomes, payload_hash
    from workers.posting import _record_attempt
    from workers.results import match_results

    parser = argparse.ArgumentParser(prog="python -m bench.steps", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500, help="BATCH_SIZE")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    scratch = tempfile.TemporaryDirectory(prefix="gpbench-")
    source = Database("steps_source", prefix="gpbench")
    try:
        seed_source(source.url, "src", SourceShape(args.rows * 4, args.rows * 40))
        mapping = Path(scratch.name) / "mapping.toml"
        mapping.write_text(mapping_text("src"))
        with harness(source.url, args.rows) as h:
            from producers.produce import produce_run

            run_id = h.create_run(str(mapping), args.rows)
            produce_run(h.producer(run_id), run_id)
            ctx = h.posting
            engine = h.engine
            with engine.connect() as conn:
                batch = conn.execute(
                    text(
                        "SELECT id, seq, payload, manifest FROM batches WHERE run_id = :r AND stage = 'invoices' "
                        "AND rows = :n ORDER BY seq LIMIT 1"
                    ),
                    {"r": run_id, "n": args.rows},
                ).one()
            ref = BatchRef(batch.id, run_id, "invoices", batch.seq)
            entries = load_manifest(batch.manifest)
            payload = bytes(batch.payload)
            # Customers and plans must be known to the sandbox for a clean answer: post them once.
            for stage in ("plans", "customers"):
                with engine.connect() as conn:
                    bodies = conn.execute(
                        text("SELECT payload FROM batches WHERE run_id = :r AND stage = :s"), {"r": run_id, "s": stage}
                    ).scalars().all()
                for body in bodies:
                    classify(ctx.client.post_rows(stage, bytes(body), KEY), KEY)
            exchange = ctx.client.post_rows("invoices", payload, KEY)
            results = classify(exchange, KEY)
            send = list(range(len(entries)))

            def outcomes() -> list[Outcome]:
                answered = match_results([entries[i] for i in send], results)
                sent = {}
                for i, (outcome, export_status, message) in zip(send, answered):
                    sent[i] = Outcome(
                        entries[i][0], outcome, clean_text(redact(message, KEY)), clean_text(redact(export_status, KEY), 200),
                        payload_hash(entries[i]), exchange.status, sent=True,
                    )
                return [sent[i] for i in range(len(entries))]

            built = outcomes()

            def in_rolled_back(step: Callable[[Any], Any]) -> Callable[[], Any]:
                def run() -> Any:
                    with engine.connect() as conn:
                        trans = conn.begin()
                        try:
                            return step(conn)
                        finally:
                            trans.rollback()
                return run

            def claim_like(conn: Any) -> Any:
                # The claim's UPDATE ... RETURNING payload, manifest and the manifest's decoding.
                row = conn.execute(
                    text(
                        "UPDATE batches SET lease_owner = 'bench' WHERE id = :id "
                        "RETURNING payload, manifest, rows, attempts"
                    ),
                    {"id": ref.batch_id},
                ).one()
                return orjson.loads(row.manifest)

            def one_statement(conn: Any) -> None:
                # The batch is put in `running` under a lease first (a cheap UPDATE, counted in this step).
                conn.execute(text("UPDATE batches SET state = 'running', lease_owner = 'bench' WHERE id = :id"), {"id": ref.batch_id})
                statuses = [outcome for outcome, _, _ in match_results([entries[i] for i in send], results)]
                store.record_accepted(
                    conn, ref.batch_id, "bench", 1, status_counters(statuses), run_id=run_id, entity="invoices",
                    statuses=statuses, http_status=200, sent_at=now, answered_at=now, latency_ms=1.0,
                )

            now = datetime.now(timezone.utc)
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("pool checkout (with pre-ping) + BEGIN/ROLLBACK", in_rolled_back(lambda conn: None)),
                ("claim: UPDATE ... RETURNING + manifest decode", in_rolled_back(claim_like)),
                ("local outcomes (invalid, rejected customers/plans)",
                 in_rolled_back(lambda conn: local_outcomes(conn, run_id, "invoices", DATA_SOURCE, entries, False))),
                ("rate limiter acquire (Redis script)", lambda: ctx.limiter.acquire(run_id, 2.0)),
                ("POST (httpx, sandbox answers at once)", lambda: ctx.client.post_rows("invoices", payload, KEY)),
                ("classify: parse the answer", lambda: classify(exchange, KEY)),
                ("match results + build Outcomes", outcomes),
                ("counters", lambda: counters(built)),
                ("record: COPY the audit rows (write_outcomes)",
                 in_rolled_back(lambda conn: write_outcomes(
                     conn, run_id=run_id, entity="invoices", batch_id=ref.batch_id, pass_no=1, outcomes=built,
                     attempts=1, sent_at=now, answered_at=now))),
                ("record: the attempt (INSERT batch_attempts)",
                 in_rolled_back(lambda conn: _record_attempt(conn, ref.batch_id, exchange, len(send), None, KEY))),
                # As after a batch in steady state: the barrier checks, then one batch queued (rolled back).
                ("instead of the 4 steps above: match + record in one statement (store.record_accepted)",
                 in_rolled_back(one_statement)),
                ("advance: stage barrier + queue one batch", in_rolled_back(lambda conn: _advance_locked(conn, run_id, 1))),
                ("publish one post_batch message (Celery)", lambda: ctx.publisher.publish_batch(ref)),
            ]
            print(f"one batch of {len(entries)} invoices; CPU of this process, minimum of {args.repeat} tries")
            total = 0.0
            figures = []
            for name, step in steps:
                seconds = cpu_of(step, args.repeat)
                if not name.startswith("instead"):
                    total += seconds
                figures.append((name, seconds))
            for name, seconds in figures:
                print(f"  {seconds * 1e3:7.3f} ms  {seconds / len(entries) * 1e6:6.2f} µs/row  {seconds / total * 100:5.1f}%  {name}")
            print(f"  {total * 1e3:7.3f} ms  {total / len(entries) * 1e6:6.2f} µs/row  in all")
    finally:
        source.drop()
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
