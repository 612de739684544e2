"""Run one producer in a fresh process and report its memory: `python -m tests.perf.producer_child`.

Prints one JSON object: the resident set once everything is imported and connected, the peak
resident set while producing every stage, and the rows produced. The peak is the kernel's VmHWM,
reset to the current size just before producing (`/proc/self/clear_refs`), so start-up's own
transient peak does not hide what production needs. The guard compares two sources of different
sizes; a process of its own keeps the pytest process's memory out of the figure.
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson
from sqlalchemy import text


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Reset VmHWM to the current resident set (Linux 4.0+) and return that size in KiB."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")
    return _status_kb("VmHWM")


def main() -> None:
    """Produce a run of the given source and print the memory figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--mapping", required=True)
    parser.add_argument("--data-source", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    args = parser.parse_args()

    from backfill.runs import RunOptions, create_run
    from models.db import make_engine
    from producers.mapping import load_mapping
    from producers.normalize import PayloadOptions
    from producers.produce import ProducerContext, produce_run

    engine = make_engine(args.state, pool_size=1, application_name="perf guard producer")
    mapping = load_mapping(args.mapping)
    run_id = create_run(engine, RunOptions(args.data_source, "http://sandbox.invalid", args.batch_size, mapping.to_json(), args.mapping))
    ctx = ProducerContext(
        engine=engine,
        source_url=args.source,
        options=PayloadOptions(data_source=args.data_source),
        lease_seconds=60.0,
        owner=f"perf-child:{os.getpid()}",
        on_checkpoint=lambda _run: None,
    )
    baseline = _reset_peak()
    assert produce_run(ctx, run_id)
    peak = _status_kb("VmHWM")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT coalesce(sum(rows), 0) FROM batches WHERE run_id = :r"), {"r": run_id}).scalar_one()
    engine.dispose()
    sys.stdout.write(orjson.dumps({"baseline_kb": baseline, "peak_kb": peak, "rows": int(rows)}).decode() + "\n")


if __name__ == "__main__":
    main()
