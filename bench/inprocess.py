"""The importer's own code in one process, without Celery: CPU per row and a deterministic profile.

    .venv/bin/python -m bench.inprocess --invoices 50000 [--profile]

Produces a run with `producers.produce.produce_run` and posts every batch with
`workers.posting.process_batch` (a real PostingContext: state database, httpx client to the sandbox
in its own process, Celery publisher on a private Redis), one batch after the other. The CPU time of
this process is then the importer's code alone: no worker pool, no thread switching, no Celery
consumer. Comparing it with scenario `cpu` of `bench.run` shows what the deployment adds. With
`--profile`, cProfile timed by CPU (deterministic, so small functions look dearer than they are) prints where the
time goes in each half.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.seeder import SourceShape, mapping_text, seed_source
from bench.services import Database, RedisServer, run_cli, start_sandbox

KEY, DATA_SOURCE = "key_inproc", "ds_inproc"


@dataclass
class Harness:
    """A state database, a private Redis, the sandbox, and the contexts the importer's functions take."""

    engine: Engine
    source_url: str
    posting: Any
    settings: Any

    def producer(self, run_id: int) -> Any:
        """A ProducerContext for runs of the bench data source (checkpoints dispatch nothing)."""
        from producers.produce import ProducerContext

        return ProducerContext.from_settings(
            self.settings, self.engine, DATA_SOURCE, owner=f"bench:{os.getpid()}", on_checkpoint=lambda _run: None
        )

    def create_run(self, mapping_path: str, batch_size: int) -> int:
        """A run as `start` creates it."""
        from backfill.runs import RunOptions, create_run
        from producers.mapping import load_mapping

        mapping = load_mapping(mapping_path)
        options = RunOptions(DATA_SOURCE, self.settings.growpanel_api_url, batch_size, mapping.to_json(), mapping_path)
        return create_run(self.engine, options)

    def post_all(self, run_id: int) -> int:
        """Queue and post every batch of the run, one at a time, until the run ends; returns batches posted."""
        from backfill.dispatch import BatchRef, advance
        from workers.posting import process_batch

        ctx = self.posting
        advance(self.engine, run_id, ctx.publisher, ctx.settings.max_in_flight)
        posted = 0
        while True:
            with self.engine.connect() as conn:
                queued = conn.execute(
                    text("SELECT id, stage, seq, part FROM batches WHERE run_id = :r AND state = 'queued' ORDER BY seq, part"),
                    {"r": run_id},
                ).all()
                state = conn.execute(text("SELECT state FROM runs WHERE id = :r"), {"r": run_id}).scalar_one()
            if not queued:
                if state != "running":
                    return posted
                raise RuntimeError(f"run {run_id} is running with nothing queued")
            for row in queued:
                result = process_batch(ctx, BatchRef(row.id, run_id, row.stage, row.seq, row.part))
                if result != "done":
                    raise RuntimeError(f"batch {row.id}: {result}")
                posted += 1


@contextmanager
def harness(source_url: str, batch_size: int = 500) -> Iterator[Harness]:
    """Start the services and build the contexts; stop and drop everything afterwards."""
    from backfill.settings import load_settings
    from workers.celery_app import app, use_settings
    from workers.context import PostingContext
    from workers.publisher import CeleryPublisher

    state = Database("inproc_state", prefix="gpbench")
    redis_server = RedisServer().start()
    sandbox = start_sandbox({KEY: DATA_SOURCE}, 0.0, None)
    posting = None
    try:
        settings = load_settings(
            database_url=state.url,
            source_database_url=source_url,
            celery_broker_url=redis_server.url(),
            growpanel_api_url=sandbox.url,
            growpanel_api_keys={DATA_SOURCE: KEY},
            batch_size=batch_size,
        )
        migrated = run_cli(["migrate"], {"DATABASE_URL": state.url})
        if migrated.returncode != 0:
            raise RuntimeError(migrated.stderr)
        use_settings(settings)
        posting = PostingContext.from_settings(
            settings, CeleryPublisher(app), owner=f"bench:{os.getpid()}", application_name="bench in-process"
        )
        yield Harness(posting.engine, source_url, posting, settings)
    finally:
        if posting is not None:
            posting.close()
        sandbox.stop()
        redis_server.cleanup()
        state.drop()


def _profile_text(profiler: cProfile.Profile, title: str, n: int) -> str:
    out = io.StringIO()
    out.write(f"--- {title}: by own time\n")
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(n)
    out.write(f"--- {title}: by cumulative time\n")
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(n)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Produce and post a source in-process; print CPU µs per row for each half."""
    from producers.produce import produce_run

    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=50_000)
    parser.add_argument("--customers", type=int, default=None, help="default: invoices / 10")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--profile", action="store_true", help="cProfile a second run and print the top functions")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=3, help="plain runs; the minimum and median are shown")
    args = parser.parse_args(argv)
    scratch = tempfile.TemporaryDirectory(prefix="gpbench-")
    source = Database("inproc_source", prefix="gpbench")
    try:
        customers = args.customers or max(10, args.invoices // 10)
        seed_source(source.url, "src", SourceShape(customers, args.invoices))
        mapping = Path(scratch.name) / "mapping.toml"
        mapping.write_text(mapping_text("src"))
        with harness(source.url, args.batch_size) as h:
            plain: list[tuple[float, float]] = []
            for profiled in [False] * args.repeat + ([True] if args.profile else []):
                run_id = h.create_run(str(mapping), args.batch_size)
                prof_produce, prof_post = cProfile.Profile(time.process_time), cProfile.Profile(time.process_time)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                if profiled:
                    prof_produce.enable()
                if not produce_run(h.producer(run_id), run_id):
                    raise RuntimeError("the producer lost its lease")
                if profiled:
                    prof_produce.disable()
                cpu1, wall1 = time.process_time(), time.perf_counter()
                if profiled:
                    prof_post.enable()
                batches = h.post_all(run_id)
                if profiled:
                    prof_post.disable()
                cpu2, wall2 = time.process_time(), time.perf_counter()
                with h.engine.connect() as conn:
                    rows = int(conn.execute(text("SELECT count(*) FROM audit WHERE run_id = :r"), {"r": run_id}).scalar_one())
                label = "profiled (cProfile inflates)" if profiled else "plain"
                print(
                    f"{label}: {rows:,} rows, {batches} batches; produce {(cpu1 - cpu0) / rows * 1e6:.1f} µs/row CPU "
                    f"({wall1 - wall0:.2f} s wall); post {(cpu2 - cpu1) / rows * 1e6:.1f} µs/row CPU "
                    f"({(cpu2 - cpu1) / batches * 1e3:.1f} ms per batch, {wall2 - wall1:.2f} s wall)"
                )
                if profiled:
                    print(_profile_text(prof_produce, "produce", args.top))
                    print(_profile_text(prof_post, "post", args.top))
                else:
                    plain.append(((cpu1 - cpu0) / rows * 1e6, (cpu2 - cpu1) / rows * 1e6))
            produce_us = sorted(p for p, _ in plain)
            post_us = sorted(p for _, p in plain)
            print(
                f"over {len(plain)} plain runs: produce min {produce_us[0]:.1f} median {statistics.median(produce_us):.1f} "
                f"µs/row; post min {post_us[0]:.1f} median {statistics.median(post_us):.1f} µs/row"
            )
    finally:
        source.drop()
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
