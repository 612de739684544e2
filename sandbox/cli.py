"""`growpanel-backfill sandbox`: start the sandbox from the command line."""

from __future__ import annotations

import os

import click

from sandbox.config import TOKEN_ENV, SandboxConfig, StoreMode, valid_token
from sandbox.faults import LOST_MODES, FaultConfig
from sandbox.wire import MRR_UNITS, OFFSET_MODES, SHAPES, WireConfig

KEYS_ENV = "SANDBOX_KEYS"
"""Comma-separated KEY=DATA_SOURCE_ID pairs, used when no --key is given (keeps keys off argv)."""


class _OneLineError(click.ClickException):
    """A bad option value, reported as one `Error: ...` line with the usage-error exit status."""

    exit_code = 2


def _keys_from_env() -> tuple[str, ...]:
    """The pairs of SANDBOX_KEYS ("k1=ds1,k2=ds2"), or a one-line error when it is unset too."""
    raw = os.environ.get(KEYS_ENV, "")
    values = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not values:
        raise _OneLineError(f"give at least one --key KEY=DATA_SOURCE_ID (or set {KEYS_ENV})")
    return values


def _parse_keys(values: tuple[str, ...]) -> dict[str, str]:
    """Turn KEY=DATA_SOURCE_ID pairs into a dict; raises a one-line error on a malformed one."""
    keys: dict[str, str] = {}
    for value in values:
        key, sep, data_source = value.partition("=")
        # No whitespace anywhere: a stray space would make a key no client sends.
        if not sep or not key or not data_source or any(c.isspace() for c in key + data_source):
            raise _OneLineError(f"--key must look like KEY=DATA_SOURCE_ID, got {value!r}")
        if key in keys and keys[key] != data_source:
            raise _OneLineError(f"--key {key!r} is given for two data sources")
        keys[key] = data_source
    return keys


def _parse_statuses(value: str) -> tuple[int, ...]:
    """Turn "500,502,503" into a tuple of 5xx statuses."""
    try:
        statuses = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        statuses = ()
    if not statuses or not all(500 <= s <= 599 for s in statuses):
        raise _OneLineError(f"--error-statuses must be comma-separated 5xx statuses, got {value!r}")
    return statuses


_PROBABILITY = click.FloatRange(0.0, 1.0)
_NON_NEGATIVE = click.FloatRange(min=0.0)


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port."
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="KEY=DATA_SOURCE_ID",
    help=f"An API key and its data source (repeatable); without any, ${KEYS_ENV} (k1=ds1,k2=ds2).",
)
@click.option(
    "--max-batch",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most rows per POST (more: 413).",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Requests per second per key (token bucket).",
)
@click.option(
    "--inspect", is_flag=True, help="Serve /_sandbox/ledger, requests, violations and reset-all (needs a token)."
)
@click.option(
    "--inspect-token",
    envvar=TOKEN_ENV,
    show_envvar=True,
    default=None,
    metavar="TOKEN",
    help="X-Sandbox-Token that /_sandbox/* requires; without one no /_sandbox/* route is served.",
)
@click.option(
    "--wire",
    "wire_shape",
    type=click.Choice(SHAPES),
    default="sdk",
    show_default=True,
    help="Answer shapes of progress and MRR: the SDK's, or the sandbox's earlier ones.",
)
@click.option(
    "--mrr-unit", type=click.Choice(MRR_UNITS), default="cents", show_default=True, help="Unit of MRR amounts."
)
@click.option(
    "--listing-offset",
    type=click.Choice(OFFSET_MODES),
    default="honor",
    show_default=True,
    help="Whether listings page by ?offset= (the spec documents none).",
)
@click.option(
    "--progress-delay",
    default=0.5,
    show_default=True,
    type=_NON_NEGATIVE,
    help="Seconds in 'processing' after the last stored batch.",
)
@click.option(
    "--store",
    "store_mode",
    type=click.Choice([m.value for m in StoreMode]),
    default="full",
    show_default=True,
    help="Keep whole objects or content digests only.",
)
@click.option("--latency-ms", default=0.0, type=_NON_NEGATIVE, help="Fault: fixed delay per request.")
@click.option(
    "--latency-per-row-ms", default=0.0, type=_NON_NEGATIVE, help="Fault: extra delay per row of a batch."
)
@click.option("--jitter-ms", default=0.0, type=_NON_NEGATIVE, help="Fault: random extra delay in [0, N] ms.")
@click.option(
    "--error-rate", default=0.0, type=_PROBABILITY, help="Fault: probability of a 5xx before applying."
)
@click.option(
    "--error-statuses", default="500,502,503", show_default=True, help="Fault: statuses for --error-rate."
)
@click.option(
    "--lost-rate",
    default=0.0,
    type=_PROBABILITY,
    help="Fault: probability of applying, then losing the response.",
)
@click.option(
    "--lost-mode",
    default="502",
    show_default=True,
    type=click.Choice(LOST_MODES),
    help="Fault: how a response is lost.",
)
@click.option(
    "--hang-rate", default=0.0, type=_PROBABILITY, help="Fault: probability of hanging (nothing applied)."
)
@click.option(
    "--hang-seconds",
    default=30.0,
    show_default=True,
    type=_NON_NEGATIVE,
    help="Fault: how long a hang lasts.",
)
@click.option("--outage", is_flag=True, help="Fault: every data request gets a 503.")
@click.option(
    "--throttle-rate", default=0.0, type=_PROBABILITY, help="Fault: probability of an injected 429."
)
@click.option(
    "--throttle-retry-after",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Fault: Retry-After seconds of an injected 429.",
)
@click.option(
    "--fault-path",
    "fault_paths",
    multiple=True,
    metavar="PREFIX",
    help="Fault: limit faults to paths starting with PREFIX (repeatable).",
)
@click.option("--seed", type=int, default=None, help="Fault: random seed, for reproducible runs.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option("--access-log", is_flag=True, help="Log every request (to stderr; slows big benchmarks).")
@click.option(
    "--http",
    "http_impl",
    type=click.Choice(["auto", "h11", "httptools"]),
    default="auto",
    show_default=True,
    help="uvicorn HTTP parser.",
)
@click.option(
    "--loop",
    "loop_impl",
    type=click.Choice(["auto", "asyncio", "uvloop"]),
    default="auto",
    show_default=True,
    help="uvicorn event loop.",
)
def sandbox_command(
    host: str,
    port: int,
    keys: tuple[str, ...],
    max_batch: int,
    rate_limit: float | None,
    inspect: bool,
    inspect_token: str | None,
    wire_shape: str,
    mrr_unit: str,
    listing_offset: str,
    progress_delay: float,
    store_mode: str,
    latency_ms: float,
    latency_per_row_ms: float,
    jitter_ms: float,
    error_rate: float,
    error_statuses: str,
    lost_rate: float,
    lost_mode: str,
    hang_rate: float,
    hang_seconds: float,
    outage: bool,
    throttle_rate: float,
    throttle_retry_after: int,
    fault_paths: tuple[str, ...],
    seed: int | None,
    log_level: str,
    access_log: bool,
    http_impl: str,
    loop_impl: str,
) -> None:
    """Run a local stand-in for the GrowPanel data API (see docs/sandbox.md)."""
    faults = FaultConfig(
        latency_ms=latency_ms,
        latency_per_row_ms=latency_per_row_ms,
        jitter_ms=jitter_ms,
        error_rate=error_rate,
        error_statuses=_parse_statuses(error_statuses),
        lost_rate=lost_rate,
        lost_mode=lost_mode,
        hang_rate=hang_rate,
        hang_seconds=hang_seconds,
        outage=outage,
        throttle_rate=throttle_rate,
        throttle_retry_after=throttle_retry_after,
        paths=fault_paths or None,
        seed=seed,
    )
    if inspect_token is not None and not valid_token(inspect_token):
        raise _OneLineError("--inspect-token must be non-empty printable ASCII without whitespace")
    if inspect and not inspect_token:
        raise _OneLineError(f"--inspect needs --inspect-token TOKEN (or {TOKEN_ENV})")
    config = SandboxConfig(
        keys=_parse_keys(keys or _keys_from_env()),
        max_batch=max_batch,
        rate_limit=rate_limit,
        inspect=inspect,
        inspect_token=inspect_token,
        wire=WireConfig(shape=wire_shape, mrr_unit=mrr_unit, listing_offset=listing_offset),
        progress_delay=progress_delay,
        faults=faults,
        store=StoreMode(store_mode),
    )
    # The web server is imported here, not with the module: `growpanel-backfill --help` lists this command.
    from sandbox.app import create_app
    from sandbox.server import serve

    serve(create_app(config), host, port, log_level, access_log, http_impl, loop_impl)
