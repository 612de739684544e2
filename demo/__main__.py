"""`scripts/demo`: seed a sample billing database, backfill it into the sandbox, show where to look.

Everything it starts (sandbox, worker, Flower) is stopped at the end, whatever happens.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

from demo.seed import SeedShape, seed

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".demo"
SOURCE_DB, STATE_DB = "growpanel_demo_source", "growpanel_demo_state"
DATA_SOURCE, KEY = "ds_demo", "demo-key"
ADMIN_CANDIDATES = ("postgresql:///postgres", "postgresql://127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/postgres")


def say(text: str) -> None:
    """A step of the demo, on standard error."""
    print(f"\n==> {text}", file=sys.stderr, flush=True)


def admin_url() -> str:
    """The first PostgreSQL admin connection that works (DEMO_POSTGRES_URL first)."""
    candidates = [os.environ["DEMO_POSTGRES_URL"]] if os.environ.get("DEMO_POSTGRES_URL") else list(ADMIN_CANDIDATES)
    errors = []
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=5):
                return url
        except psycopg.Error as exc:
            errors.append(f"{url}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}")
    sys.exit("cannot reach PostgreSQL; set DEMO_POSTGRES_URL to an admin connection URL\n  " + "\n  ".join(errors))


def recreate(admin: str, name: str) -> str:
    """Drop and create a demo database; return its URL."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = admin.rpartition("/")
    return f"{base}/{name}"


def free_port(preferred: int) -> int:
    """`preferred` if nobody listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def cli(*args: str) -> list[str]:
    """argv for `growpanel-backfill ARGS` in this environment."""
    return [sys.executable, "-m", "console", *args]


def wait_for(check, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll until `check()` is true."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.2)


def main() -> int:
    """Run the demo; returns the exit status."""
    WORK.mkdir(exist_ok=True)
    say("creating the demo databases")
    admin = admin_url()
    source_url, state_url = recreate(admin, SOURCE_DB), recreate(admin, STATE_DB)
    say("seeding a sample billing database (schema `billing`: price_plans, accounts, charges)")
    counts = seed(source_url, "billing", SeedShape(customers=300, years=4, whales=2, whale_invoices=1200), layout="billing")
    print(f"    {counts['plans']} plans, {counts['customers']} customers, {counts['invoices']} invoices, a few bad rows on purpose", file=sys.stderr)
    sandbox_port, flower_port = free_port(8080), free_port(5555)
    env = {
        **os.environ,
        "SOURCE_DATABASE_URL": source_url,
        "DATABASE_URL": state_url,
        "CELERY_BROKER_URL": os.environ.get("DEMO_REDIS_URL", "redis://127.0.0.1:6379/9"),
        "GROWPANEL_API_URL": f"http://127.0.0.1:{sandbox_port}",
        "GROWPANEL_API_KEY": KEY,
        "GROWPANEL_DATA_SOURCE_ID": DATA_SOURCE,
        "BATCH_SIZE": "250",
        "FLOWER_BASIC_AUTH": "demo:demo",
    }
    # The sandbox's /_sandbox/ routes answer only requests with this token (header X-Sandbox-Token);
    # random per run, and given by environment: a command line is readable by every user of the machine.
    inspect_token = secrets.token_urlsafe(24)
    started: list[subprocess.Popen[bytes]] = []

    def spawn(args: list[str], log: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        handle = (WORK / log).open("wb")
        process = subprocess.Popen(
            args, env={**env, **(extra_env or {})}, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        started.append(process)
        return process

    try:
        say("migrating the state database")
        subprocess.run(cli("migrate"), env=env, check=True)
        say(f"starting the sandbox (http://127.0.0.1:{sandbox_port}), a worker and Flower (http://127.0.0.1:{flower_port})")
        spawn(
            cli("sandbox", "--port", str(sandbox_port), "--key", f"{KEY}={DATA_SOURCE}", "--inspect"),
            "sandbox.log",
            {"SANDBOX_INSPECT_TOKEN": inspect_token},
        )
        spawn(cli("worker", "--concurrency", "8"), "worker.log")
        spawn(cli("flower", "--port", str(flower_port)), "flower.log")
        wait_for(lambda: "sandbox listening on" in (WORK / "sandbox.log").read_text(errors="replace"), 30, "the sandbox")
        wait_for(lambda: "ready." in (WORK / "worker.log").read_text(errors="replace"), 60, "the worker")
        print(f"    Flower: http://127.0.0.1:{flower_port} (user demo, password demo) while the demo runs", file=sys.stderr)
        say("backfilling: plans, then customers, then invoices (live progress below)")
        run = subprocess.run(cli("start", "--mapping", "examples/billing-mapping.toml", "--wait", "--json"), env=env, stdout=subprocess.PIPE, cwd=ROOT)
        import orjson

        doc = orjson.loads(run.stdout) if run.stdout.strip() else {}
        run_id = str(doc.get("run_id", ""))
        if not run_id:
            print("the run did not start", file=sys.stderr)
            return 2
        say("summary")
        subprocess.run(cli("status", run_id), env=env, cwd=ROOT)
        say("rows the run rejected (the sample has a few bad rows on purpose)")
        subprocess.run(cli("errors", run_id), env=env, cwd=ROOT)
        say("proving the import: GrowPanel (the sandbox) against the source")
        subprocess.run(cli("verify", run_id), env=env, cwd=ROOT)
        report = WORK / f"report-run-{run_id}.html"
        subprocess.run(cli("report", run_id, "--html", str(report)), env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        say("where to look")
        print(
            f"""    The audit table (one row per source row):
      psql '{state_url}' -c "SELECT entity, outcome, count(*) FROM audit WHERE run_id = {run_id} GROUP BY 1, 2 ORDER BY 1, 2"
    Every rejected row and why:   .venv/bin/growpanel-backfill errors {run_id}
    A report to open in a browser: {report}
    Flower was at http://127.0.0.1:{flower_port} (stopped now; `.venv/bin/growpanel-backfill flower` starts it)
    The sandbox's ledger was at http://127.0.0.1:{sandbox_port}/_sandbox/ledger (header X-Sandbox-Token: {inspect_token})
    Logs of the sandbox, worker and Flower: {WORK}/
    Settings used (export them to run the other commands against the demo):
      export DATABASE_URL='{state_url}' SOURCE_DATABASE_URL='{source_url}' GROWPANEL_DATA_SOURCE_ID={DATA_SOURCE}""",
            file=sys.stderr,
        )
        return 0 if run.returncode in (0, 1) else run.returncode
    finally:
        for process in reversed(started):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(process.pid, signal.SIGKILL)
        print("    stopped the sandbox, the worker and Flower", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
