"""Hostile ids through the operator tools (issue 12, item 6), end to end with a real worker and the sandbox:
terminal escapes are shown, never sent to the terminal; CSV cells never start a spreadsheet formula."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.integration.scenarios import PLANS, invoice, ts
from tests.support.services import Database
from tests.support.sources import build_source, mapping_file
from tests.support.stack import SandboxView, Stack

# Clears the screen and sets the terminal's title; BEL ends the title sequence.
ESC_OK = "c\x1b[2J\x1b]0;owned\x07ok"
ESC_BAD = "c\x1b[31mbad"
FORMULAS = ['=HYPERLINK("http://evil.test","x")', "+1+1", "-2+3", "@SUM(A1)", "\tc_tab", "\rc_cr"]
CUSTOMERS = [
    {"id": ESC_OK, "name": "Escapes", "created_date": ts("2024-01-01"), "country": "us"},
    # Rejected locally (no such country), with an id and a value that carry escapes.
    {"id": ESC_BAD, "name": "Red", "created_date": ts("2024-01-01"), "country": "x\x1b[5mx"},
    *({"id": f, "name": "Formula", "created_date": ts("2024-01-01"), "country": None} for f in FORMULAS),
]
INVOICES = [
    invoice("i_ok", ESC_OK, "subscription", "2024-01-01", 9900, "plan_pro", "2024-02-01"),
    # Skipped: its customer was rejected, and the message names that customer's id.
    invoice("i\x1b[2Jskipped", ESC_BAD, "subscription", "2024-01-01", 9900, "plan_pro", "2024-02-01"),
    invoice("=i_formula", ESC_OK, "one-time", "2024-01-05", -10),
]
RAW = ("\x1b", "\x07")


def _no_raw_controls(text: str) -> None:
    assert not [c for c in RAW if c in text], repr(text[:2000])


def test_hostile_ids_are_shown_escaped_and_csv_cells_are_not_formulas(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given a backfill whose source ids carry terminal escapes and spreadsheet formulas
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    mapping = mapping_file(workdir, source_schema)
    # A dry run's summary names example ids of each reason: escaped too.
    dry = stack.cli("start", "--mapping", mapping, "--dry-run")
    assert dry.code == 0, dry.stderr
    _no_raw_controls(dry.stdout + dry.stderr)
    assert "c\\x1b[31mbad" in dry.stdout
    run = stack.cli("start", "--mapping", mapping, "--wait", "--json")
    assert run.code == 1, run.stderr
    run_id = str(run.json()["run_id"])
    rejected = {(e, i): r["outcome"] for (e, i), r in stack.audit(int(run_id)).items() if r["outcome"] != "inserted"}
    assert rejected[("customers", ESC_BAD)] == "invalid" and rejected[("invoices", "i\x1b[2Jskipped")] == "skipped"
    assert all(rejected[("customers", f)] == "invalid" for f in FORMULAS)

    # When the operator lists the rejected rows, then every control character is shown as an escape
    text = stack.cli("errors", run_id)
    assert text.code == 0, text.stderr
    _no_raw_controls(text.stdout)
    assert "c\\x1b[31mbad" in text.stdout and "i\\x1b[2Jskipped" in text.stdout
    assert "x\\x1b[5mx" in text.stdout  # the bad value, inside the message
    assert "customer c\\x1b[31mbad was rejected" in text.stdout  # the skipped invoice names its customer
    assert "\\tc_tab" in text.stdout and "\\rc_cr" in text.stdout

    # and in CSV no cell starts with a formula character: = + - @ tab CR get a leading '
    spreadsheet = stack.cli("errors", run_id, "--csv")
    assert spreadsheet.code == 0, spreadsheet.stderr
    _no_raw_controls(spreadsheet.stdout)
    rows = list(csv.DictReader(io.StringIO(spreadsheet.stdout)))
    assert len(rows) == len(rejected)
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    ids = {row["id"] for row in rows}
    assert {"'" + f for f in FORMULAS[:4]} <= ids and "'\\tc_tab" in ids and "'\\rc_cr" in ids and "'=i_formula" in ids
    assert "c\\x1b[31mbad" in ids

    # while --json keeps every id exact (its encoding escapes control characters)
    exact = stack.cli("errors", run_id, "--json")
    _no_raw_controls(exact.stdout)
    assert {r["id"] for r in exact.json()} == {i for _, i in rejected}

    # When the operator looks into the customers' batch, the ids (accepted and rejected) are escaped too
    detail = stack.cli("batch", run_id, "1", "--stage", "customers")
    assert detail.code == 0, detail.stderr
    _no_raw_controls(detail.stdout)
    assert "c\\x1b[2J\\x1b]0;owned\\x07ok" in detail.stdout and "c\\x1b[31mbad" in detail.stdout
    assert stack.cli("batch", run_id, "1", "--stage", "customers", "--json").json()["row_outcomes"][0]["id"] in {c["id"] for c in CUSTOMERS}

    # and so are `status` and the HTML report
    _no_raw_controls(stack.cli("status", run_id).stdout)
    page = workdir / "report.html"
    assert stack.cli("report", run_id, "--html", str(page)).code == 0
    html = page.read_text()
    _no_raw_controls(html)
    assert "c\\x1b[31mbad" in html
