"""`report RUN --html FILE`: one self-contained page, opened in headless Chromium to check what it draws.

Chromium is required (a missing browser fails these tests, it does not skip them):
`apt-get update && apt-get install -y chromium`.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_batch_detail import EXPECTED_FAILURES, eventful_run
from tests.integration.test_prune import age
from tests.support.services import Database
from tests.support.stack import SandboxView, Stack

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WINDOW = (1200, 2400)
# The scenario's rejected rows, grouped as an operator reads them: (stage, outcome, reason, rows, examples).
EXPECTED_REASONS = {
    ("customers", "invalid", "country must be an ISO 3166-1 alpha-2 country code", "1", "c_badcountry"),
    ("customers", "invalid", "name or email is required", "1", "c_noname"),
    ("invoices", "error", "Customer ID c_nowhere does not exist", "1", "i_unknown"),
    ("invoices", "invalid", "amount_cents must not be negative", "1", "i_negative"),
    ("invoices", "skipped", "customer was rejected in this run (invalid)", "1", "i_orphan"),
}


def chromium() -> str:
    """The Chromium binary, or a clear failure saying how to install it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed; the report tests need it: apt-get update && apt-get install -y chromium")
    return path


def browse(page: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    """Open `page` in a fresh headless Chromium profile with `mode` (--dump-dom or --screenshot=...)."""
    with tempfile.TemporaryDirectory(prefix="gpbt-chromium-") as profile:
        completed = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", *mode, page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@dataclass
class Node:
    """An element of the DOM Chromium dumped."""

    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        """Descendants with this tag and/or class."""
        out = []
        for child in self.children:
            if (tag is None or child.tag == tag) and (cls is None or cls in child.attrs.get("class", "").split()):
                out.append(child)
            out += child.all(tag, cls)
        return out

    def by_id(self, element_id: str) -> Node | None:
        """The descendant with this id."""
        for child in self.children:
            if child.attrs.get("id") == element_id:
                return child
            found = child.by_id(element_id)
            if found is not None:
                return found
        return None

    def full_text(self) -> str:
        """Text of this element and its descendants."""
        return self.text + "".join(c.full_text() for c in self.children)


class _TreeBuilder(HTMLParser):
    VOID = {"meta", "link", "br", "img", "input", "hr", "col", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in self.VOID:
            self.current = node

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.text += data


def rendered_dom(page: Path) -> Node:
    """The page's DOM after its scripts ran, as Chromium serialises it."""
    builder = _TreeBuilder()
    builder.feed(browse(page, "--dump-dom").stdout)
    return builder.root


def bars(dom: Node, chart_id: str) -> list[Node]:
    """The bars a chart drew into its SVG."""
    chart = dom.by_id(chart_id)
    assert chart is not None, f"no #{chart_id}"
    svgs = chart.all("svg")
    assert len(svgs) == 1, f"#{chart_id} holds {len(svgs)} SVG elements: its script did not draw it"
    return svgs[0].all("g", "bar")


def table_rows(dom: Node, table_id: str) -> list[list[str]]:
    """The body rows of a table, as cell texts."""
    table = dom.by_id(table_id)
    assert table is not None, f"no #{table_id}"
    [body] = table.all("tbody")
    return [[cell.full_text().strip() for cell in row.children if cell.tag in ("td", "th")] for row in body.all("tr")]


def throughput_bars(dom: Node) -> list[dict[str, Any]]:
    """What each bar of the throughput chart stands for, and how many rectangles it drew."""
    return [
        {
            "start": b.attrs["data-start"],
            "accepted": int(b.attrs["data-accepted"]),
            "rejected": int(b.attrs["data-rejected"]),
            "rects": len(b.all("rect")),
        }
        for b in bars(dom, "chart-throughput")
    ]


def attempt_bars(dom: Node) -> dict[int, int]:
    """Attempts -> batches, from the histogram's bars (checking each non-empty bar drew a rectangle)."""
    out = {}
    for bar in bars(dom, "chart-attempts"):
        n, batches = int(bar.attrs["data-attempts"]), int(bar.attrs["data-batches"])
        assert len(bar.all("rect")) == (1 if batches else 0)
        out[n] = batches
    return out


def expected_histogram(stack: Stack, run_id: int) -> dict[int, int]:
    """Attempts per batch counted from the attempt records, every count between the least and the most."""
    per_batch = stack.sql(
        """
        SELECT b.id, count(a.id) AS n FROM batches b LEFT JOIN batch_attempts a ON a.batch_id = b.id
        WHERE b.run_id = :r GROUP BY b.id
        """,
        r=run_id,
    )
    counts = Counter(row["n"] for row in per_batch)
    return {n: counts.get(n, 0) for n in range(min(counts), max(counts) + 1)}


def check_no_external_resources(html: str) -> None:
    """Nothing the page could fetch: no URL at all, no src/href, no CSS import or url()."""
    assert not re.search(r"https?://", html), re.search(r".{40}https?://.{40}", html)
    assert not re.search(r"\b(src|href|srcset)\s*=", html, re.IGNORECASE)
    assert "@import" not in html and "url(" not in html and "<link" not in html.lower()


def test_report_is_self_contained_and_its_charts_render_in_chromium(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path, tmp_path: Path
) -> None:
    chromium()
    # Given a finished run with retried batches and rejected rows
    run_id = eventful_run(stack, sandbox, source_db, source_schema, workdir)
    status = stack.status(run_id)
    # When the operator writes its report
    page = tmp_path / "report.html"
    result = stack.cli("report", str(run_id), "--html", str(page))
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == str(page)
    # Then it is one file that needs nothing from the network
    check_no_external_resources(page.read_text())
    # and, opened in a browser, its script drew both charts.
    dom = rendered_dom(page)
    [body] = dom.all("body")
    assert body.attrs.get("data-charts") == "rendered"
    # Throughput: every row the run answered is in exactly one bucket, and every non-empty bucket drew its bar.
    throughput = throughput_bars(dom)
    assert throughput
    answered = sum(s["rows"] - s["pending"] for s in status["stages"].values())
    assert sum(b["accepted"] + b["rejected"] for b in throughput) == answered
    assert sum(b["rejected"] for b in throughput) == sum(s["error"] + s["invalid"] + s["skipped"] for s in status["stages"].values())
    assert all(b["rects"] == (b["accepted"] > 0) + (b["rejected"] > 0) for b in throughput)
    # Attempts per batch: the histogram of the attempt records, retried batches included.
    histogram = attempt_bars(dom)
    assert histogram == expected_histogram(stack, run_id)
    assert any(n >= 2 and batches for n, batches in histogram.items())
    # The reasons, grouped with their counts and example ids
    reasons = {tuple(row) for row in table_rows(dom, "reasons-table")}
    assert reasons == EXPECTED_REASONS
    # The counts per stage, as `status` has them
    stages = {row[0]: row for row in table_rows(dom, "stages-table")}
    for stage, s in status["stages"].items():
        assert stages[stage][:4] == [stage, s["state"], str(s["rows"]), str(s["accepted"])]
        assert stages[stage][9:12] == [str(s["error"]), str(s["invalid"]), str(s["skipped"])]
    # The summary and what came back over HTTP
    summary = {row[0]: row[1] for row in table_rows(dom, "summary-table")}
    assert (summary["State"], summary["Data source"], summary["Pass"]) == ("completed_with_errors", sandbox.data_source, "1")
    by_status = {row[0]: int(row[1]) for row in table_rows(dom, "status-table")}
    assert {s: by_status.get(str(s)) for s in EXPECTED_FAILURES} == dict.fromkeys(EXPECTED_FAILURES, 1)
    # A screenshot of the whole page: a real PNG of the window's size, with more than a blank page in it.
    shot = tmp_path / "report.png"
    browse(page, f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == WINDOW
    assert len(data) > 40_000, len(data)


def test_report_of_a_pruned_run_keeps_the_summary_and_says_what_is_gone(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path, tmp_path: Path
) -> None:
    chromium()
    # Given a report written before the run was pruned
    run_id = eventful_run(stack, sandbox, source_db, source_schema, workdir)
    age(stack, run_id, 45)
    full = tmp_path / "full.html"
    assert stack.cli("report", str(run_id), "--html", str(full)).code == 0
    full_dom = rendered_dom(full)
    pruned = stack.cli("prune", "--older-than", "30d")
    assert pruned.code == 0, pruned.stderr
    # When the report is written again after `prune`
    page = tmp_path / "pruned.html"
    result = stack.cli("report", str(run_id), "--html", str(page))
    assert result.code == 0, result.stderr
    check_no_external_resources(page.read_text())
    dom = rendered_dom(page)
    # Then it says the detail is gone, shows no reasons,
    note = dom.by_id("pruned-note")
    assert note is not None and "pruned" in note.full_text()
    assert dom.by_id("reasons-table") is None and dom.by_id("status-table") is None
    # and keeps the same counts and the same throughput (both come from the batches' counters),
    assert table_rows(dom, "stages-table") == table_rows(full_dom, "stages-table")
    assert throughput_bars(dom) == throughput_bars(full_dom)
    # with attempts per batch now read from the batches' counters.
    assert attempt_bars(dom) == attempt_bars(full_dom)
    source = dom.by_id("charts")
    assert source is not None and "batch counters" in source.full_text()


def test_report_of_an_unknown_run_fails_clearly(stack: Stack, tmp_path: Path) -> None:
    result = stack.cli("report", "999999", "--html", str(tmp_path / "r.html"))
    assert result.code == 4 and "there is no run 999999" in result.stderr
    assert not (tmp_path / "r.html").exists()
