"""Turning the report document into one self-contained HTML file: tables in HTML, charts by an inline script."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from html import escape as _html_escape
from importlib import resources
from typing import Any

import orjson

from console.batch_detail import excerpt
from console.safe_text import visible
from models.states import STAGES

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_COUNTS = ("inserted", "updated", "unchanged", "success", "unchanged (skipped locally)")
_COUNT_HEADS = ("inserted", "updated", "unchanged", "success", "unchanged locally")


def escape(value: Any) -> str:
    """Text for HTML: control characters shown as escapes (`visible`), then `<`, `>`, `&` and quotes escaped."""
    return _html_escape(visible(value))


def _resource(name: str) -> str:
    return resources.files("console.report").joinpath(name).read_text(encoding="utf-8")


def script_json(data: Any) -> str:
    """JSON safe inside a <script> element: `<`, `>` and `&` escaped, so no text can close the element."""
    raw = orjson.dumps(data).decode()
    return raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(data: dict[str, Any]) -> str:
    """The report page; its only moving part is the inline script that draws the charts."""
    run = data["run"]
    parts = {
        "title": escape(f"Run {run['run_id']} — {run['data_source']}"),
        "generated": escape(_when(data["generated_at"])),
        "note": _note(data),
        "summary": _summary(run),
        "stages": _stages(data["status"]),
        "attempts": _attempts(data),
        "histogram_source": escape(f"from {data['attempts_per_batch']['source']}"),
        "reasons": _reasons(data),
        "batches": _batches(data),
        "style": _resource("style.css"),
        "script": _resource("charts.js"),
        "data": script_json(data),
    }
    # One pass over the template: text inserted for one placeholder is never scanned for another.
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], _resource("template.html"))


def _n(value: int | float | None) -> str:
    return "-" if value is None else f"{value:,}"


def _note(data: dict[str, Any]) -> str:
    if not data["pruned"]:
        return ""
    return (
        f'<p class="note" id="pruned-note">The detail of this run was pruned at {escape(_when(data["run"]["pruned_at"]))}: '
        "the summary, the per-stage counts and the throughput come from the batches' counters, which are kept; "
        "error reasons, example ids and per-attempt figures are no longer available.</p>"
    )


def _summary(run: dict[str, Any]) -> str:
    options = [name for name, on in (("dry run", run["dry_run"]), ("only changed", run["only_changed"])) if on]
    rows = [
        ("State", f'<span class="state state-{escape(run["state"])}">{escape(run["state"])}</span>'),
        ("Data source", escape(run["data_source"])),
        ("Pass", str(run["pass"])),
        ("Started", escape(_when(run["started_at"]))),
        ("Finished", escape(_when(run["finished_at"]))),
        ("Duration", escape(_duration(run["duration_seconds"]))),
        ("Rows", _n(run["rows"])),
        ("Batch size", str(run["batch_size"])),
        ("Options", escape(", ".join(options) or "none")),
    ]
    if run["mapping_file"]:
        rows.append(("Mapping file", f"<code>{escape(run['mapping_file'])}</code>"))
    if run["paused_reason"]:
        rows.append(("Reason", escape(run["paused_reason"])))
    if run["pruned_at"]:
        rows.append(("Detail pruned", escape(_when(run["pruned_at"]))))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv" id="summary-table"><tbody>{body}</tbody></table>'


def _when(iso: str | None) -> str:
    """`2026-01-31 12:00:05 UTC` from an ISO 8601 instant."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    if seconds < 0:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f} s"
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _stages(status: dict[str, Any]) -> str:
    head = (
        "<tr><th>stage</th><th>state</th><th class='n'>rows</th><th class='n'>accepted</th>"
        + "".join(f"<th class='n'>{escape(c)}</th>" for c in _COUNT_HEADS)
        + "<th class='n'>error</th><th class='n'>invalid</th><th class='n'>skipped</th><th class='n'>pending</th>"
        "<th class='n'>failed batches</th></tr>"
    )
    totals: dict[str, int] = {}
    body = []
    for stage in STAGES:
        s = status["stages"][stage]
        values = [s["rows"], s["accepted"], *(s["by_status"][c] for c in _COUNTS), s["error"], s["invalid"], s["skipped"], s["pending"], s["failed_batches"]]
        for i, v in enumerate(values):
            totals[str(i)] = totals.get(str(i), 0) + v
        cells = "".join(f"<td class='n'>{_n(v)}</td>" for v in values)
        body.append(f'<tr data-stage="{stage}"><td>{stage}</td><td>{escape(s["state"])}</td>{cells}</tr>')
    foot = "<tr><td>all</td><td></td>" + "".join(f"<td class='n'>{_n(totals[str(i)])}</td>" for i in range(len(totals))) + "</tr>"
    return f'<div class="wide"><table id="stages-table"><thead>{head}</thead><tbody>{"".join(body)}</tbody><tfoot>{foot}</tfoot></table></div>'


def _attempts(data: dict[str, Any]) -> str:
    b = data["batches"]
    lines = (
        f"<p>{_n(b['batches'])} batches: {_n(b['done'])} done, {_n(b['failed'])} failed, {_n(b['split'])} split "
        f"after a 413, {_n(b['open'])} not finished; {_n(b['retried'])} needed more than one attempt, "
        f"{_n(b['throttled'])} rate-limited answers.</p>"
    )
    a = data["attempts"]
    if a is None:
        return lines + '<p class="hint">Per-attempt records were pruned.</p>'
    lat = a["latency_ms"]
    lines += (
        f"<p>{_n(a['total'])} HTTP attempts, {_n(a['clean'])} clean 200s. Latency p50 {_n(lat['p50'])} ms, "
        f"p95 {_n(lat['p95'])} ms, max {_n(lat['max'])} ms.</p>"
    )
    rows = "".join(
        f"<tr><td>{escape(str(s['status'])) if s['status'] is not None else 'no answer (network error or timeout)'}</td>"
        f"<td class='n'>{_n(s['count'])}</td></tr>"
        for s in a["by_status"]
    )
    return lines + f'<table id="status-table"><thead><tr><th>HTTP status</th><th class="n">attempts</th></tr></thead><tbody>{rows}</tbody></table>'


def _reasons(data: dict[str, Any]) -> str:
    reasons = data["reasons"]
    if reasons is None:
        return '<p class="hint">Error reasons are read from the audit rows, which were pruned; the counts per stage are above.</p>'
    if not reasons["shown"]:
        return '<p id="no-reasons">No row was rejected.</p>'
    rows = "".join(
        f"<tr><td>{escape(r['entity'])}</td><td>{escape(r['outcome'])}</td><td>{escape(r['reason'])}</td>"
        f"<td class='n'>{_n(r['count'])}</td>"
        f"<td class='examples'>{''.join(f'<code>{escape(e)}</code>' for e in r['examples'])}</td></tr>"
        for r in reasons["shown"]
    )
    more = reasons["groups"] - len(reasons["shown"])
    tail = f'<p class="hint">{more} less frequent reasons are not shown.</p>' if more > 0 else ""
    run_id = data["run"]["run_id"]
    return (
        '<table id="reasons-table"><thead><tr><th>stage</th><th>outcome</th><th>reason</th><th class="n">rows</th>'
        f"<th>examples</th></tr></thead><tbody>{rows}</tbody></table>{tail}"
        f'<p class="hint">Every rejected row with its message: <code>growpanel-backfill errors {run_id} --csv</code></p>'
    )


def _batches(data: dict[str, Any]) -> str:
    batches = data["retried_batches"]
    if not batches["shown"]:
        return "<p>Every batch was answered at its first attempt.</p>"
    rows = "".join(
        f"<tr><td>{escape(b['stage'])}</td><td class='n'>{b['pass']}</td><td>{escape(b['batch'])}</td><td>{escape(b['state'])}</td>"
        f"<td class='n'>{b['attempts']}</td><td class='n'>{b['throttled']}</td><td>{escape(excerpt(b['last_error'], 160))}</td></tr>"
        for b in batches["shown"]
    )
    more = batches["total"] - len(batches["shown"])
    tail = f'<p class="hint">and {more} more.</p>' if more > 0 else ""
    run_id = data["run"]["run_id"]
    return (
        '<table id="batches-table"><thead><tr><th>stage</th><th class="n">pass</th><th>batch</th><th>state</th>'
        '<th class="n">attempts</th><th class="n">rate limited</th><th>last error</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>{tail}"
        f'<p class="hint">What each attempt sent and got back: <code>growpanel-backfill batch {run_id} SEQ --stage STAGE</code></p>'
    )
