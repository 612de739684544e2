"""Sandbox throughput: valid 500-row invoice batches posted over HTTP by concurrent clients.

Starts the sandbox with uvicorn in its own process (pinned to one core with os.sched_setaffinity
where the platform has it; this client then runs on the other cores), posts the plans and customers
the invoices reference, then times repetitions of pre-built invoice batches and prints rows/s
(median over repetitions) and the sandbox process's CPU seconds per 1,000 rows.

    .venv/bin/python bench/sandbox_throughput.py --clients 4 --batches 60 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
KEY, DATA_SOURCE = "bench-key", "ds_bench"
PLANS = ("plan_basic", "plan_pro", "plan_team")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--batch-size", type=int, default=500, help="rows per POST")
    parser.add_argument("--batches", type=int, default=60, help="batches per repetition")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions (median shown)")
    parser.add_argument("--customers", type=int, default=5000, help="customers the invoices spread over")
    parser.add_argument("--store", choices=("full", "digest"), default="full", help="sandbox store mode")
    parser.add_argument(
        "--http", choices=("auto", "h11", "httptools"), default="auto", help="sandbox HTTP parser"
    )
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="sandbox event loop"
    )
    parser.add_argument("--server-core", type=int, default=0, help="core the sandbox is pinned to")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    return parser.parse_args()


def pin_supported() -> bool:
    """Whether this platform can pin processes to cores."""
    return hasattr(os, "sched_setaffinity")


def start_sandbox(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    """Start the sandbox (pinned if asked) and return the process and its base URL."""
    pin = not args.no_pin and pin_supported()
    core = args.server_core

    def pin_child() -> None:
        if pin:
            os.sched_setaffinity(0, {core})

    command = [
        sys.executable,
        "-m",
        "sandbox",
        "--port",
        "0",
        "--key",
        f"{KEY}={DATA_SOURCE}",
        "--store",
        args.store,
        "--log-level",
        "warning",
        "--http",
        args.http,
        "--loop",
        args.loop,
        "--max-batch",
        str(max(1000, args.batch_size)),
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, preexec_fn=pin_child)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("sandbox listening on "):
        process.kill()
        raise SystemExit(f"sandbox did not start: {line!r}")
    if pin:
        others = set(range(os.cpu_count() or 1)) - {core}
        if others:
            os.sched_setaffinity(0, others)
    return process, line.split()[-1]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds used so far by a process (from /proc, else psutil)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        import psutil  # type: ignore[import-untyped]  # only where /proc is missing

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)


def invoice(number: int, customer: int, month: int) -> dict[str, object]:
    """One valid subscription invoice; months increase with the batch so dates stay in order."""
    year, month0 = divmod(month, 12)
    start = f"{2000 + year:04d}-{month0 + 1:02d}-01T00:00:00Z"
    end_year, end_month0 = divmod(month + 1, 12)
    end = f"{2000 + end_year:04d}-{end_month0 + 1:02d}-01T00:00:00Z"
    return {
        "id": f"inv_{number:09d}",
        "customer_id": f"cust_{customer:06d}",
        "plan_id": PLANS[customer % len(PLANS)],
        "type": "subscription",
        "date": start,
        "amount_cents": 900 + (customer % 50) * 100,
        "currency": "usd",
        "start_date": start,
        "end_date": end,
        "payment_date": start,
        "quantity": 1 + customer % 3,
        "proration": False,
        "data_source": DATA_SOURCE,
    }


def build_batches(args: argparse.Namespace, repetition: int) -> list[bytes]:
    """Pre-serialised invoice batches of one repetition (fresh ids, so every row is inserted)."""
    batches = []
    per_rep = args.batches * args.batch_size
    for b in range(args.batches):
        rows = []
        for r in range(args.batch_size):
            n = repetition * per_rep + b * args.batch_size + r
            # Each invoice of a customer comes in a later month than the previous one.
            rows.append(invoice(n, n % args.customers, n // args.customers))
        batches.append(orjson.dumps(rows))
    return batches


async def post_all(client: httpx.AsyncClient, path: str, bodies: list[bytes], clients: int) -> int:
    """POST every body with `clients` concurrent workers; return the rows accepted."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    accepted = 0

    async def worker() -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            response = await client.post(path, content=body)
            response.raise_for_status()
            result = orjson.loads(response.content)["result"]
            bad = [r for r in result if r["export_status"] == "error"]
            if bad:
                raise SystemExit(f"unexpected row errors, first: {bad[0]}")
            accepted += len(result)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return accepted


async def run(args: argparse.Namespace, base_url: str, pid: int) -> list[tuple[float, float]]:
    """Load the references, then time each repetition: (rows/s, CPU s per 1,000 rows)."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as client:
        plans = [
            {"id": p, "name": p, "billing_freq": "month", "currency": "usd", "data_source": DATA_SOURCE}
            for p in PLANS
        ]
        await post_all(client, "/data/plans", [orjson.dumps(plans)], 1)
        customers = [
            {
                "id": f"cust_{c:06d}",
                "name": f"Customer {c}",
                "email": f"c{c}@example.com",
                "created_date": "1999-12-01T00:00:00Z",
                "country": "us",
                "data_source": DATA_SOURCE,
            }
            for c in range(args.customers)
        ]
        chunks = [orjson.dumps(customers[i : i + 500]) for i in range(0, len(customers), 500)]
        await post_all(client, "/data/customers", chunks, args.clients)
        figures = []
        for repetition in range(args.repeat):
            bodies = build_batches(args, repetition)
            cpu_before, started = cpu_seconds(pid), time.perf_counter()
            rows = await post_all(client, "/data/invoices", bodies, args.clients)
            elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
            figures.append((rows / elapsed, cpu / rows * 1000))
            print(
                f"  repetition {repetition + 1}: {rows} rows in {elapsed:.3f} s = "
                f"{rows / elapsed:,.0f} rows/s, sandbox CPU {cpu / rows * 1e6:.1f} ms per 1,000 rows"
            )
        return figures


def main() -> None:
    """Run the benchmark and print the summary."""
    args = parse_args()
    process, base_url = start_sandbox(args)
    try:
        pinned = not args.no_pin and pin_supported()
        print(
            f"sandbox pid {process.pid} at {base_url}, store={args.store}, "
            f"{'pinned to core ' + str(args.server_core) if pinned else 'not pinned'}; "
            f"{args.clients} clients, {args.batches} batches x {args.batch_size} rows per repetition"
        )
        figures = asyncio.run(run(args, base_url, process.pid))
    finally:
        process.terminate()
        process.wait(timeout=10)
    rate = statistics.median(f[0] for f in figures)
    cpu = statistics.median(f[1] for f in figures)
    print(
        f"median: {rate:,.0f} rows/s; sandbox CPU {cpu:.4f} s per 1,000 rows "
        f"({1000 / cpu if cpu else float('inf'):,.0f} rows per CPU second)"
    )


if __name__ == "__main__":
    main()
