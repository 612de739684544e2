"""The scenarios of issue 5: each builds a deployment, runs the importer, and returns table rows and notes.

| scenario | sandbox | what is measured |
|---|---|---|
| memory | no latency | producer/worker peak RSS and Redis peak at a small and a 10x larger source; status and first rows on the larger |
| rate | 200 ms per batch, R requests/s | answered requests/s against R (GROWPANEL_MAX_RPS = R) |
| floor | 50 ms per batch | importer rows/s against a bare httpx client posting the same batches |
| cpu | no latency | CPU µs per row of producer + workers; optional py-spy profiles |
| pool | 200 ms and none | threads against prefork (and gevent) at equal total concurrency |
| inflight | 1 s per batch, small batches | requests one worker process keeps in flight, per pool |
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.deployment import Deployment, RunResult, Setup
from bench.figures import batch_waits, first_post, request_stats, timeline
from bench.floor import load_batches, post_floor
from bench.measure import mib
from bench.profiling import format_top
from bench.seeder import SourceShape, mapping_text, seed_source
from bench.status_check import audit_indexes, audit_readers, measure_status


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    setup: str
    rows: int
    seconds: float
    rows_per_s: float
    req_per_s: float | None = None
    floor_ratio: float | None = None
    cpu_us_per_row: float | None = None
    producer_rss: float | None = None
    worker_rss: float | None = None
    redis_peak: float | None = None
    sandbox: str = ""
    machine: float | None = None
    pg_us_per_row: float | None = None
    first_request: float | None = None


@dataclass
class Outcome:
    """What a scenario produced: table rows, checks against the targets, and notes for BENCHMARKS.md."""

    rows: list[Row] = field(default_factory=list)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        """Add another outcome's rows, checks and notes."""
        self.rows += other.rows
        self.checks += other.checks
        self.notes += other.notes


@dataclass
class Bench:
    """What every scenario shares: the source database, the work directory and the options."""

    source_url: str
    workdir: Path
    base: Setup
    customers_per_invoice: float = 0.1
    repeat: int = 1
    log: Callable[[str], None] = print
    _seeded: dict[tuple[int, int], str] = field(default_factory=dict)

    def source(self, invoices: int, whales: int = 3) -> str:
        """A mapping file over a source of `invoices` invoices (seeded once per shape)."""
        schema = self._seeded.get((invoices, whales))
        if schema is None:
            schema = f"src_{invoices}" + ("" if whales == 3 else f"_w{whales}")
            customers = max(10, int(invoices * self.customers_per_invoice))
            self.log(f"seeding {customers:,} customers and {invoices:,} invoices ({whales} whales) into {schema}")
            seed_source(self.source_url, schema, SourceShape(customers, invoices, whales=whales))
            self._seeded[(invoices, whales)] = schema
        path = self.workdir / f"{schema}.toml"
        path.write_text(mapping_text(schema))
        return str(path)

    def deploy(self, **changes: Any) -> Deployment:
        """A fresh deployment with the base setup changed as given."""
        setup = replace(self.base, **changes)
        self.log(f"deploying {setup.label()}, sandbox latency {setup.latency_ms:g} ms, limit {setup.rate_limit or 'none'}")
        return Deployment(setup, self.source_url, self.workdir)


def _sandbox_cost(result: RunResult) -> str:
    cpu = result.cpu.get("sandbox", 0.0)
    return f"{cpu:.1f} s ({cpu / result.total_rows * 1e6:.0f} µs/row, {cpu / result.seconds * 100:.0f}% of a core)"


def _worker_peak(result: RunResult) -> float:
    return max((s.peak for name, s in result.series.items() if name.startswith("worker")), default=0)


def _worker_growth(result: RunResult) -> float:
    """Largest RSS growth of a worker from a quarter of the run (warmed up) to its end, in bytes."""
    return max(
        (s.samples[-1][1] - s.at(0.25) for name, s in result.series.items() if name.startswith("worker") and s.samples),
        default=0,
    )


def row_of(name: str, setup: Setup, result: RunResult, **extra: Any) -> Row:
    """A table row from a run."""
    stats = request_stats(result.requests)
    producer = result.hwm.get("producer")
    return Row(
        scenario=name,
        setup=f"{setup.label()}, {setup.latency_ms:g} ms" + (f", {setup.rate_limit:g} req/s" if setup.rate_limit else ""),
        rows=result.total_rows,
        seconds=result.seconds_from_start,
        rows_per_s=result.total_rows / result.seconds_from_start,
        req_per_s=stats.ok_per_second,
        cpu_us_per_row=result.importer_cpu / result.total_rows * 1e6,
        producer_rss=mib(producer) if producer else None,
        worker_rss=mib(_worker_peak(result)),
        redis_peak=mib(result.redis["peak"]),
        sandbox=_sandbox_cost(result),
        machine=result.machine_busy,
        pg_us_per_row=result.postgres_cpu / result.total_rows * 1e6,
        first_request=result.first_request,
        **extra,
    )


def _median_run(bench: Bench, deployment: Deployment, mapping: str, profile: list[str] | None = None) -> list[RunResult]:
    return [deployment.run(mapping, profile=profile) for _ in range(bench.repeat)]


def _pick_median(results: list[RunResult]) -> RunResult:
    ordered = sorted(results, key=lambda r: r.total_rows / r.seconds_from_start)
    return ordered[len(ordered) // 2]


def scenario_memory(bench: Bench, small: int, large: int) -> Outcome:
    """Scenario 1 (and 5, 6 on the large run): memory at two source sizes."""
    out = Outcome()
    results: dict[int, RunResult] = {}
    for size in (small, large):
        mapping = bench.source(size)
        deployment = bench.deploy(latency_ms=0.0, rate_limit=None)
        try:
            result = deployment.run(mapping)
            results[size] = result
            out.rows.append(row_of(f"1 memory {size // 1000}k", deployment.setup, result))
            growth = _worker_growth(result)
            out.notes.append(
                f"memory {size:,} invoices: producer VmHWM {mib(result.hwm['producer']):.1f} MiB, workers' peak "
                f"{mib(_worker_peak(result)):.1f} MiB, largest worker growth from 25% of the run to its end "
                f"{mib(growth):+.1f} MiB, Redis used_memory_peak {mib(result.redis['peak']):.2f} MiB "
                f"(before the run {mib(result.redis_before['peak']):.2f} MiB)"
            )
            if size == large:
                out.extend(_status_and_first(deployment, result))
        finally:
            deployment.close()
    a, b = results[small], results[large]
    producer_ratio = b.hwm["producer"] / a.hwm["producer"]
    redis_ratio = b.redis["peak"] / a.redis["peak"]
    out.checks.append(("producer peak RSS, large/small within 20%", producer_ratio <= 1.2, f"{producer_ratio:.3f}"))
    out.checks.append(("Redis used_memory_peak, large/small within 20%", redis_ratio <= 1.2, f"{redis_ratio:.3f}"))
    # Judged on the large run: on a short run the first quarter is still warming up (pools, buffers).
    growth, peak = _worker_growth(b), _worker_peak(b)
    out.checks.append(
        ("workers' RSS does not grow over the large run (< 5% from 25% of the run to its end)", growth < 0.05 * peak,
         f"{mib(growth):+.1f} MiB of {mib(peak):.0f} MiB")
    )
    return out


def _status_and_first(deployment: Deployment, result: RunResult) -> Outcome:
    """Scenarios 5 and 6 on the large run."""
    out = Outcome()
    status = measure_status(deployment.engine, deployment.env, result.run_id)
    # Issue 13: both commands within 150 ms on a run of 1,000,000 audit rows.
    out.checks.append(("status CLI answers in <= 150 ms", status.cli_ms <= 150, f"{status.cli_ms:.0f} ms"))
    out.checks.append(("errors CLI answers in <= 150 ms", status.errors_ms <= 150, f"{status.errors_ms:.0f} ms ({status.rejected:,} rows)"))
    out.checks.append(
        ("status_document (the queries) answers in < 100 ms", status.in_process_ms < 100, f"{status.in_process_ms:.1f} ms")
    )
    out.checks.append(("status does not read the audit table", not status.touches_audit, "EXPLAIN of every statement"))
    lines = [
        f"status on run {result.run_id}: {status.audit_rows:,} audit rows in {status.batches:,} batches",
        f"  `growpanel-backfill status RUN`: median {status.cli_ms:.0f} ms (--json {status.cli_json_ms:.0f} ms); "
        f"`errors RUN` ({status.rejected:,} rejected rows): {status.errors_ms:.0f} ms (--csv {status.errors_csv_ms:.0f} ms); "
        f"`growpanel-backfill --help`: {status.help_ms:.0f} ms; `python -c pass`: {status.python_ms:.0f} ms; "
        f"status_document in-process: {status.in_process_ms:.1f} ms",
        "  statements of status_document (EXPLAIN ANALYZE):",
    ]
    for statement, ms, nodes in status.statements:
        read = ", ".join(f"{n.node}" + (f" on {n.relation}" if n.relation else "") + (f" using {n.index}" if n.index else "") for n in nodes)
        lines.append(f"    {ms:7.2f} ms  {read}  <- {statement[:90]}")
    lines.append("  slowest imports of `status` (µs, cumulative): " + ", ".join(f"{m} {us:,}" for us, m in status.import_top))
    lines.append("  indexes on audit: " + "; ".join(f"{n} {mib(size):.1f} MiB" for n, _, size in audit_indexes(deployment.engine)))
    for use in audit_readers(deployment.engine, result.run_id, result.data_source):
        read = ", ".join(f"{n.node}" + (f" using {n.index}" if n.index else "") + f" ({n.rows:,} rows)" for n in use.nodes) or "no audit node"
        lines.append(f"    {use.ms:8.2f} ms  {use.reader}: {read}")
    out.notes.append("\n".join(lines))
    # Scenario 6: how soon the first rows go out.
    t0 = result.cli_started
    firsts = {e: first_post(result.requests, e) for e in ("plans", "customers", "invoices")}
    produced = {s: t.get("produced") for s, t in result.stage_times.items()}
    plans = firsts["plans"]
    out.checks.append(
        ("first plan batch posted within 5 s of `start`", plans is not None and plans - t0 < 5, f"{(plans or 0) - t0:.2f} s")
    )
    parts = []
    for entity in ("plans", "customers", "invoices"):
        first = firsts[entity]
        done = produced.get(entity)
        parts.append(
            f"{entity}: first POST {first - t0:.2f} s" if first is not None else f"{entity}: no POST"
        )
        if done is not None:
            parts[-1] += f", produced by {done - t0:.2f} s"
    out.notes.append(
        f"first rows (seconds after `start` was invoked; the run row was created at {result.started_at - t0:.2f} s): "
        + "; ".join(parts)
    )
    return out


def scenario_rate(bench: Bench, size: int, rate: float) -> Outcome:
    """Scenario 2: a rate-limited sandbox at 200 ms per batch."""
    out = Outcome()
    mapping = bench.source(size)
    deployment = bench.deploy(latency_ms=200.0, rate_limit=rate)
    try:
        results = _median_run(bench, deployment, mapping)
    finally:
        deployment.close()
    result = _pick_median(results)
    stats = request_stats(result.requests)
    share = stats.ok_per_second / rate
    over_run = stats.ok / result.seconds
    out.rows.append(row_of("2 rate limit", deployment.setup, result))
    out.checks.append((f"sustains >= 95% of R = {rate:g} req/s", share >= 0.95, f"{share * 100:.1f}%"))
    out.notes.append(
        f"rate: {stats.ok} answered POSTs in a {stats.window:.2f} s window = {stats.ok_per_second:.2f} req/s "
        f"({share * 100:.1f}% of {rate:g}); over the whole run (creation to end, {result.seconds:.2f} s) "
        f"{over_run:.2f} req/s; {stats.throttled} answers were 429; requests in flight {stats.mean_in_flight:.1f} on "
        f"average (at most {stats.max_in_flight})"
        + (f"; runs: {', '.join(f'{request_stats(r.requests).ok_per_second:.2f}' for r in results)}" if len(results) > 1 else "")
    )
    return out


def scenario_floor(bench: Bench, size: int, latency_ms: float = 50.0, target: float = 0.8) -> Outcome:
    """Scenario 3: importer against the bare-client floor at `latency_ms` per batch, equal requests in flight.

    The importer's time runs from `start` being invoked to the run's end; the floor's from its first
    request to its last answer (its payloads are built before its clock starts). Runs alternate.
    """
    out = Outcome()
    mapping = bench.source(size)
    deployment = bench.deploy(latency_ms=latency_ms, rate_limit=None)
    try:
        importer: list[RunResult] = []
        floors = []
        waits = []
        for _ in range(bench.repeat):
            result = deployment.run(mapping)
            importer.append(result)
            waits.append(batch_waits(deployment.engine, result.run_id))
            data_source, key = deployment.next_data_source()
            batches = load_batches(deployment.engine, result.run_id, result.data_source, data_source)
            floors.append(post_floor(deployment.sandbox.url, key, batches, deployment.setup.in_flight))
    finally:
        deployment.close()
    ratios = [r.total_rows / r.seconds_from_start / f.rows_per_second for r, f in zip(importer, floors)]
    imp_rate = statistics.median(r.total_rows / r.seconds_from_start for r in importer)
    floor_rate = statistics.median(f.rows_per_second for f in floors)
    ratio = imp_rate / floor_rate
    result = _pick_median(importer)
    label = f"{latency_ms:g} ms"
    out.rows.append(row_of(f"3 vs floor {label}", deployment.setup, result, floor_ratio=ratio))
    floor = sorted(floors, key=lambda f: f.rows_per_second)[len(floors) // 2]
    out.rows.append(
        Row(f"3 floor {label} (bare httpx)", f"{deployment.setup.in_flight} threads, {label}", floor.rows, floor.seconds,
            floor.rows_per_second, req_per_s=floor.requests / floor.seconds, cpu_us_per_row=floor.cpu_seconds / floor.rows * 1e6)
    )
    out.checks.append((f"importer rows/s >= {target * 100:.0f}% of the floor at {label}", ratio >= target, f"{ratio * 100:.1f}%"))
    firsts = [r.first_request for r in importer if r.first_request is not None]
    out.notes.append(
        f"floor at {label}: importer {imp_rate:,.0f} rows/s (`start` to the run's end), floor {floor_rate:,.0f} rows/s "
        f"({floor.requests} requests, {deployment.setup.in_flight} threads, {floor.errors} row errors); "
        f"ratio of medians {ratio * 100:.1f}%; per pair {[round(x * 100, 1) for x in ratios]}; importer runs "
        f"{[round(r.total_rows / r.seconds_from_start) for r in importer]}, floors {[round(f.rows_per_second) for f in floors]}; "
        f"first request after `start` {[round(x, 2) for x in firsts]} s"
    )
    out.notes.append(f"timeline of the median importer run at {label}: "
                     + timeline(result.requests, result.cli_started, result.finished_at))
    out.notes.append(f"where the median run's batches waited at {label}: {waits[importer.index(result)]}")
    return out


def _cpu_split(r: RunResult) -> str:
    n = r.total_rows
    workers = sum(v for k, v in r.cpu.items() if k.startswith("worker"))
    return (f"producer {r.cpu.get('producer', 0) / n * 1e6:.1f} + workers {workers / n * 1e6:.1f} = "
            f"{r.importer_cpu / n * 1e6:.1f} µs/row, Postgres {r.postgres_cpu / n * 1e6:.1f}, first request {r.first_request:.2f} s")


def scenario_cpu(bench: Bench, size: int, profile: bool) -> Outcome:
    """Scenario 4: CPU per row at zero latency, and (optionally) where it goes."""
    out = Outcome()
    mapping = bench.source(size)
    deployment = bench.deploy(latency_ms=0.0, rate_limit=None)
    try:
        results = _median_run(bench, deployment, mapping)
        profiled = deployment.run(mapping, profile=["producer", "worker1"]) if profile else None
    finally:
        deployment.close()
    result = _pick_median(results)
    us = result.importer_cpu / result.total_rows * 1e6
    out.rows.append(row_of("4 CPU per row", deployment.setup, result))
    out.checks.append(("importer CPU <= 30 µs per row", us <= 30, f"{us:.1f} µs/row"))
    split = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in result.cpu.items())
    out.notes.append(
        f"cpu: {result.total_rows:,} rows in {result.seconds:.2f} s = {result.total_rows / result.seconds:,.0f} rows/s; "
        f"CPU {split}; producer {result.cpu.get('producer', 0) / result.total_rows * 1e6:.1f} µs/row, workers "
        f"{sum(v for k, v in result.cpu.items() if k.startswith('worker')) / result.total_rows * 1e6:.1f} µs/row; "
        f"`start` command {result.start_command_cpu:.2f} s (not counted); PostgreSQL backends "
        f"{result.postgres_cpu:.2f} s = {result.postgres_cpu / result.total_rows * 1e6:.1f} µs/row (not counted); "
        f"first request {result.first_request:.2f} s after `start`"
        + (f"; runs: {', '.join(_cpu_split(r) for r in results)}" if len(results) > 1 else "")
    )
    if profiled is not None:
        for name, path in profiled.profiles.items():
            out.notes.append(format_top(f"profile of {name} (py-spy --gil: samples holding the GIL)", path, 20))
    return out


def scenario_pool(bench: Bench, size: int, pools: list[str]) -> Outcome:
    """Threads against prefork (and gevent) at the same total concurrency."""
    out = Outcome()
    mapping = bench.source(size)
    for latency in (200.0, 0.0):
        for pool in pools:
            deployment = bench.deploy(latency_ms=latency, rate_limit=None, pool=pool)
            try:
                results = _median_run(bench, deployment, mapping)
            finally:
                deployment.close()
            result = _pick_median(results)
            total = sum(s.peak for name, s in result.series.items() if name.startswith("worker"))
            row = row_of(f"pool {pool}", deployment.setup, result)
            out.rows.append(row)
            stats = request_stats(result.requests)
            out.notes.append(
                f"pool {pool} at {latency:g} ms: {row.rows_per_s:,.0f} rows/s, {row.req_per_s:.1f} req/s, "
                f"requests in flight at the sandbox {stats.mean_in_flight:.1f} on average (at most {stats.max_in_flight}), "
                f"{row.cpu_us_per_row:.1f} µs/row, workers' RSS in all {mib(total):.0f} MiB"
                + (f"; runs: {', '.join(f'{r.total_rows / r.seconds:,.0f} rows/s {r.importer_cpu / r.total_rows * 1e6:.1f} µs/row' for r in results)}" if len(results) > 1 else "")
            )
    return out


def scenario_inflight(bench: Bench, size: int, pools: list[str], workers: int, concurrency: int) -> Outcome:
    """How many requests W workers keep in flight when the API is slow and the CPU is not the limit.

    The source has no whales: a customer with thousands of invoices is a chain of batches posted one
    after the other (per-customer order), which would measure the chain, not the pool.
    """
    out = Outcome()
    mapping = bench.source(size, whales=0)
    for pool in pools:
        deployment = bench.deploy(
            latency_ms=1000.0, rate_limit=None, pool=pool, workers=workers, concurrency=concurrency, batch_size=50,
            max_in_flight=max(64, workers * concurrency),
        )
        try:
            result = deployment.run(mapping)
        finally:
            deployment.close()
        stats = request_stats(result.requests)
        slots = workers * concurrency
        row = row_of(f"in flight {pool}", deployment.setup, result)
        out.rows.append(row)
        out.checks.append(
            (f"{pool}: {slots} slots keep >= 80% of them in flight at 1 s per request", stats.mean_in_flight >= 0.8 * slots,
             f"{stats.mean_in_flight:.1f} on average")
        )
        total = sum(s.peak for name, s in result.series.items() if name.startswith("worker"))
        out.notes.append(
            f"in flight, {pool}, {deployment.setup.label()}, batches of 50, 1 s per request: {stats.mean_in_flight:.1f} "
            f"requests in flight on average (at most {stats.max_in_flight}), {stats.ok_per_second:.1f} req/s, "
            f"{row.cpu_us_per_row:.1f} µs/row, workers' RSS in all {mib(total):.0f} MiB"
        )
    return out
