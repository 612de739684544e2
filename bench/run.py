"""One command for the whole benchmark: seed, deploy, run every scenario, print the table.

    .venv/bin/python -m bench.run --scenario all --workers 2 --concurrency 8

Creates (and drops) its own databases, a private redis-server per scenario, the sandbox in its own
process and the worker processes; prints one table row per scenario, the targets met or missed, and
writes the same as Markdown (with notes and profiles) to OUT/report.md. See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

from bench.deployment import Setup
from bench.report import checks, markdown, table
from bench.scenarios import (
    Bench,
    Outcome,
    scenario_cpu,
    scenario_floor,
    scenario_inflight,
    scenario_memory,
    scenario_pool,
    scenario_rate,
)
from bench.services import ROOT, Database

SCENARIOS = ("memory", "rate", "floor", "floor200", "cpu", "pool", "inflight")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=(*SCENARIOS, "all"), help="repeatable; default all")
    parser.add_argument("--workers", type=int, default=2, help="worker processes posting batches (W)")
    parser.add_argument("--concurrency", type=int, default=8, help="slots per worker (threads, processes or greenlets)")
    parser.add_argument("--pool", choices=("threads", "prefork", "gevent", "solo"), default="threads")
    parser.add_argument("--producer", choices=("separate", "shared"), default="separate",
                        help="a worker of its own for the produce queue (default), or every worker takes both queues")
    parser.add_argument("--max-in-flight", type=int, default=64, help="MAX_IN_FLIGHT")
    parser.add_argument("--batch-size", type=int, default=500, help="BATCH_SIZE")
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the workers (INFO is the shipped default)")
    parser.add_argument("--small", type=int, default=100_000, help="invoices of the smaller memory source")
    parser.add_argument("--large", type=int, default=1_000_000, help="invoices of the larger memory source (status, first rows)")
    parser.add_argument("--size", type=int, default=200_000, help="invoices for the rate, floor and cpu scenarios")
    parser.add_argument("--pool-size", type=int, default=100_000, help="invoices for the pool comparison")
    parser.add_argument("--pools", default="threads,prefork,gevent", help="pools compared by the pool and inflight scenarios")
    parser.add_argument("--inflight-size", type=int, default=20_000, help="invoices for the inflight scenario")
    parser.add_argument("--customers-per-invoice", type=float, default=0.1, help="customers = invoices x this")
    parser.add_argument("--rate", type=float, default=10.0, help="R: the sandbox's and the importer's requests/s limit")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario (the median is reported)")
    parser.add_argument("--profile", action="store_true", help="py-spy profiles of the producer and a worker (scenario cpu)")
    parser.add_argument("--out", type=Path, default=None, help="where logs, profiles and report.md go")
    return parser.parse_args(argv)


def machine() -> str:
    """Cores, memory, load and versions, for the record."""
    mem = psutil.virtual_memory()
    load = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), {mem.total / 2**30:.1f} GiB memory, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; Python {platform.python_version()}; commit {commit}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios and print the results."""
    args = parse_args(argv)
    chosen = SCENARIOS if not args.scenario or "all" in args.scenario else tuple(dict.fromkeys(args.scenario))
    started = datetime.now(timezone.utc)
    out_dir = args.out or Path(f"/tmp/gpbench-{started.strftime('%Y%m%d-%H%M%S')}")
    out_dir.mkdir(parents=True, exist_ok=True)
    before = machine()
    print(f"{started:%Y-%m-%d %H:%M} UTC; {before}")
    print(f"command: {' '.join([Path(sys.executable).name, '-m', 'bench.run', *(argv if argv is not None else sys.argv[1:])])}")
    base = Setup(
        workers=args.workers,
        concurrency=args.concurrency,
        pool=args.pool,
        max_in_flight=args.max_in_flight,
        batch_size=args.batch_size,
        producer=args.producer,
        log_level=args.log_level,
    )
    source = Database("source", prefix="gpbench")
    outcome = Outcome()
    t0 = time.monotonic()
    try:
        bench = Bench(source.url, out_dir, base, args.customers_per_invoice, args.repeat)
        pools = [p.strip() for p in args.pools.split(",") if p.strip()]
        for name in chosen:
            print(f"--- scenario {name}")
            if name == "memory":
                part = scenario_memory(bench, args.small, args.large)
            elif name == "rate":
                part = scenario_rate(bench, args.size, args.rate)
            elif name == "floor":
                part = scenario_floor(bench, args.size, 50.0, 0.8)
            elif name == "floor200":
                part = scenario_floor(bench, args.size, 200.0, 0.95)
            elif name == "cpu":
                part = scenario_cpu(bench, args.size, args.profile)
            elif name == "pool":
                part = scenario_pool(bench, args.pool_size, pools)
            else:
                part = scenario_inflight(bench, args.inflight_size, pools, args.workers, args.concurrency)
            outcome.extend(part)
            print(table(part.rows))
            for note in part.notes:
                print(note)
            if part.checks:
                print(checks(part))
    finally:
        source.drop()
    after = machine()
    elapsed = time.monotonic() - t0
    print("\n=== results")
    print(table(outcome.rows))
    print(checks(outcome))
    print(f"{elapsed:.0f} s in all; after: {after}")
    report = out_dir / "report.md"
    report.write_text(
        f"Run {started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s.\n\nBefore: {before}\n\nAfter: {after}\n\n"
        f"Command: `.venv/bin/python -m bench.run {' '.join(argv if argv is not None else sys.argv[1:])}`\n\n"
        + markdown(outcome.rows)
        + "\n\n"
        + "\n".join(f"- {'met' if ok else '**missed**'}: {what}: {figure}" for what, ok, figure in outcome.checks)
        + "\n\n```\n"
        + "\n\n".join(outcome.notes)
        + "\n```\n"
    )
    print(f"report: {report}")
    return 0 if all(ok for _, ok, _ in outcome.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
