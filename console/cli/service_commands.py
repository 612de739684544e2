"""Commands that run services or maintain the state database: migrate, worker, flower."""

from __future__ import annotations

import os
from pathlib import Path

import click

from console.cli import handles_errors
from console.cli import context as ctx

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> object:
    """An Alembic Config pointing at our migrations, with the URL from settings."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


@click.command()
@handles_errors
def migrate() -> None:
    """Bring the state database to the latest migration."""
    from alembic import command

    settings = ctx.settings("database_url")
    assert settings.database_url
    command.upgrade(alembic_config(settings.database_url), "head")  # type: ignore[arg-type]
    click.echo("state database is up to date")


@click.command()
@click.option("--concurrency", "-c", default=16, show_default=True, help="Batches posted at once by this worker.")
@click.option("--pool", type=click.Choice(["threads", "prefork", "solo"]), default="threads", show_default=True)
@click.option("--loglevel", "-l", default=None, help="Log level (default: LOG_LEVEL).")
@click.option("--hostname", "-n", default=None, help="Celery node name (default: celery@HOST-PID).")
@click.option(
    "--queues",
    "-Q",
    default=None,
    help="Queues to consume (default both: growpanel.batches,growpanel.produce); e.g. a producer-only worker.",
)
@handles_errors
def worker(concurrency: int, pool: str, loglevel: str | None, hostname: str | None, queues: str | None) -> None:
    """Start a Celery worker for both queues (same as `celery -A workers worker`)."""
    settings = ctx.settings("database_url", "celery_broker_url", "source_database_url")
    ctx.engine(settings)
    ctx.check_broker(settings)
    from backfill.messages import BATCH_QUEUE, PRODUCE_QUEUE
    from workers.celery_app import app, use_settings

    use_settings(settings)
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--loglevel={loglevel or settings.log_level}",
        f"--queues={queues or f'{BATCH_QUEUE},{PRODUCE_QUEUE}'}",
        "--task-events",
        f"--hostname={hostname or f'celery@%h-{os.getpid()}'}",
    ]
    app.worker_main(argv)


@click.command()
@click.option("--port", default=5555, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True)
@handles_errors
def flower(port: int, address: str) -> None:
    """Start Flower on the same broker (basic auth from FLOWER_BASIC_AUTH=user:password)."""
    settings = ctx.settings("celery_broker_url")
    from workers.celery_app import app, use_settings

    use_settings(settings)
    argv = ["flower", f"--port={port}", f"--address={address}"]
    auth = os.environ.get("FLOWER_BASIC_AUTH")
    if auth:
        argv.append(f"--basic-auth={auth}")
    app.start(argv)


