"""The results as a plain-text table (for the terminal) and as Markdown (for BENCHMARKS.md)."""

from __future__ import annotations

from bench.scenarios import Outcome, Row

COLUMNS = (
    ("scenario", "scenario"),
    ("setup", "setup"),
    ("rows", "rows"),
    ("seconds", "s"),
    ("rows_per_s", "rows/s"),
    ("req_per_s", "req/s"),
    ("floor_ratio", "vs floor"),
    ("cpu_us_per_row", "CPU µs/row"),
    ("pg_us_per_row", "Postgres µs/row"),
    ("first_request", "1st request s"),
    ("producer_rss", "producer RSS MiB"),
    ("worker_rss", "worker RSS MiB"),
    ("redis_peak", "Redis peak MiB"),
    ("machine", "machine busy"),
    ("sandbox", "sandbox CPU"),
)


def _cell(row: Row, attr: str) -> str:
    value = getattr(row, attr)
    if value is None or value == "":
        return "-"
    if attr == "floor_ratio" or attr == "machine":
        return f"{value * 100:.0f}%"
    if attr == "first_request":
        return f"{value:.2f}"
    if attr == "rows":
        return f"{value:,}"
    if attr in ("rows_per_s",):
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    return str(value)


def table(rows: list[Row]) -> str:
    """An aligned plain-text table."""
    cells = [[title for _, title in COLUMNS]] + [[_cell(r, attr) for attr, _ in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[Row]) -> str:
    """A Markdown table."""
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_cell(r, attr) for attr, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def checks(outcome: Outcome) -> str:
    """One line per target: met or missed, with the figure."""
    return "\n".join(f"[{'met' if ok else 'MISSED'}] {what}: {figure}" for what, ok, figure in outcome.checks)
