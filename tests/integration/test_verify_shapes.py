"""`verify`, `verify --mrr` and `start --wait-processing` against the sandbox in the official SDK's wire
shapes and in the older ones, with real workers: per-currency months, the MRR unit, the drill-down to
a customer, and listings that ignore `offset`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests.integration.scenarios import CUSTOMERS, INVOICES, PLANS, invoice, ts
from tests.integration.test_verify import _clean, _counts, _import, _post, _story_source
from tests.support.services import Database
from tests.support.sources import build_source, mapping_file
from tests.support.stack import SandboxView, Stack
from tests.unit import test_mrr_rules as story

SDK_WIRE = {"wire": "sdk", "mrr_unit": "cents", "listing_offset": "honor"}


def _query(record: dict[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(record["query"]))


@contextmanager
def wire(sandbox: SandboxView, **settings: str) -> Iterator[None]:
    """The sandbox answering in these wire shapes, back to the SDK's default afterwards (it is shared)."""
    sandbox.faults(**settings)
    try:
        yield
    finally:
        sandbox.faults(**SDK_WIRE)


@pytest.mark.parametrize("shape", ["sdk", "legacy"])
def test_rows_and_months_verify_in_either_wire_shape(shape: str, stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given the hand-worked MRR story imported, and the sandbox answering in one shape
    _story_source(source_db, source_schema)
    run = _import(stack, mapping_file(workdir, source_schema))
    assert run["state"] == "succeeded"
    with wire(sandbox, wire=shape):
        if shape == "sdk":
            # The SDK's plan listing carries external_id (and no id): plans still match one to one
            listed = sandbox.api("GET", "/data/plans", params={"source": sandbox.data_source, "limit": 10}).json()
            assert all("external_id" in p for p in listed["result"]["list"])
        result = stack.cli("verify", "--mrr", "--json")
    # Then every row and every month matches, in cents, detected from the source's own figures
    assert result.code == 0, result.stderr + result.stdout
    doc = result.json()
    for entity, n in (("plans", len(story.PLANS)), ("customers", len(story.CUSTOMERS)), ("invoices", len(story.INVOICES))):
        assert _counts(doc, entity) == _clean(n)
    hand = {m["period"]: {k: v for k, v in m.items() if k != "period"} for m in story.expected_months()}
    assert {m["period"]: m["source"] for m in doc["months"]} == hand
    for month in doc["months"]:
        assert {k: month["growpanel"][k] for k in hand[month["period"]]} == hand[month["period"]]
    assert doc["mrr_unit"]["unit"] == "cents" and doc["mrr_unit"]["how"].startswith("detected")
    assert {m["currency"] for m in doc["months"]} == {"usd"}
    assert doc["drilldown"] == []
    # A changed invoice is flagged in either shape; only the SDK's (filtered) answers are drilled down
    stored = {o["id"]: o for o in sandbox.ledger()["invoices"]}
    _post(sandbox, "invoices", [{**stored["u01"], "amount_cents": 109900}])
    with wire(sandbox, wire=shape):
        changed = stack.cli("verify", "--mrr", "--json").json()
    assert changed["months"][0]["currency"] == "usd" and any(m["flagged"] for m in changed["months"])
    if shape == "sdk":
        assert {d["period"]: d["responsible"] for d in changed["drilldown"]}["2024-06"] == ["c_three"]
    else:
        assert changed["drilldown"] == [] and any("cannot be drilled down" in w for w in changed["warnings"])


def test_an_mrr_report_in_whole_units_is_detected_or_set(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    _story_source(source_db, source_schema)
    assert _import(stack, mapping_file(workdir, source_schema))["state"] == "succeeded"
    with wire(sandbox, mrr_unit="units"):
        detected = stack.cli("verify", "--mrr", "--json")
        text = stack.cli("verify", "--mrr")
        wrong = stack.cli("verify", "--mrr", "--json", env={"MRR_REPORT_UNIT": "cents"})
    # Detected: GrowPanel's 183.25 is 18325 cents, and every month matches
    assert detected.code == 0, detected.stderr + detected.stdout
    assert detected.json()["mrr_unit"]["unit"] == "units"
    assert "GrowPanel's MRR unit: units (detected" in text.stdout
    assert ["2024-12", "183.25", "183.25", "0.00", "0.00%", "2", "2"] in [line.split() for line in text.stdout.splitlines()]
    # Forced to the wrong unit, the setting is obeyed (and every month with MRR is flagged)
    assert wrong.code == 1
    assert wrong.json()["mrr_unit"] == {"unit": "cents", "how": "MRR_REPORT_UNIT=cents"}


def _three_currencies(source_db: Database, schema: str) -> None:
    """Customers billing in usd, eur and gbp: monthly plans, one annual, an upgrade and a churn."""

    def bill(iid: str, customer: str, day: str, amount: int, plan: str, end: str, currency: str) -> dict[str, Any]:
        return {**invoice(iid, customer, "subscription", day, amount, plan, end), "currency": currency}

    plans = [
        {"id": "p_usd", "name": "US monthly", "billing_freq": "month", "currency": "usd"},
        {"id": "p_eur", "name": "EU monthly", "billing_freq": "month", "currency": "eur"},
        {"id": "p_gbp", "name": "UK annual", "billing_freq": "year", "currency": "gbp"},
    ]
    customers = [
        {"id": cid, "name": cid, "email": f"{cid}@example.test", "created_date": ts("2024-01-01"), "country": country}
        for cid, country in (("c_us", "us"), ("c_eu", "de"), ("c_eu2", "fr"), ("c_uk", "gb"))
    ]
    invoices = [
        bill("u1", "c_us", "2024-01-01", 10000, "p_usd", "2024-02-01", "usd"),
        bill("u2", "c_us", "2024-02-01", 15000, "p_usd", "2024-03-01", "usd"),
        bill("u3", "c_us", "2024-03-01", 15000, "p_usd", "2024-04-01", "usd"),
        bill("e1", "c_eu", "2024-01-01", 5000, "p_eur", "2024-02-01", "eur"),
        bill("e2", "c_eu", "2024-02-01", 5000, "p_eur", "2024-03-01", "eur"),
        bill("e3", "c_eu", "2024-03-01", 5000, "p_eur", "2024-04-01", "eur"),
        bill("e4", "c_eu", "2024-04-01", 5000, "p_eur", "2024-05-01", "eur"),
        bill("f1", "c_eu2", "2024-02-01", 7000, "p_eur", "2024-03-01", "eur"),
        bill("f2", "c_eu2", "2024-03-01", 9000, "p_eur", "2024-04-01", "eur"),
        bill("g1", "c_uk", "2024-01-15", 120000, "p_gbp", "2025-01-15", "gbp"),
    ]
    build_source(source_db.url, schema, plans, customers, invoices)


def test_three_currencies_verify_per_currency_and_a_changed_invoice_is_traced_to_its_customer(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given a source billing in three currencies, imported
    _three_currencies(source_db, source_schema)
    assert _import(stack, mapping_file(workdir, source_schema))["state"] == "succeeded"
    # When it is verified month by month
    result = stack.cli("verify", "--mrr", "--json")
    # Then each currency is compared on its own (no FX) and every month of every currency matches
    assert result.code == 0, result.stderr + result.stdout
    doc = result.json()
    assert sorted({m["currency"] for m in doc["months"]}) == ["eur", "gbp", "usd"]
    assert [m["difference"] for m in doc["months"]] == [0] * len(doc["months"])
    by = {(m["currency"], m["period"]): m for m in doc["months"]}
    assert by[("eur", "2024-03")]["source"]["total_mrr"] == 14000 and by[("gbp", "2024-03")]["source"]["total_mrr"] == 10000
    assert by[("usd", "2024-02")]["source"]["expansion"] == 5000
    assert not [w for w in doc["warnings"] if "currencies" in w]
    requests = [r for r in sandbox.requests() if r["path"] == "/reports/mrr"]
    assert {(_query(r).get("currency"), _query(r).get("baseCurrency")) for r in requests[-3:]} == {("usd", "usd"), ("eur", "eur"), ("gbp", "gbp")}
    # Given GrowPanel's copy of c_eu's March invoice changed (5000 -> 9000 euro cents)
    stored = {o["id"]: o for o in sandbox.ledger()["invoices"]}
    _post(sandbox, "invoices", [{**stored["e3"], "amount_cents": 9000}])
    changed = stack.cli("verify", "--mrr", "--json")
    text = stack.cli("verify", "--mrr")
    # Then only euro March is flagged, and the drill-down names c_eu, and c_eu alone, as the cause
    assert changed.code == 1
    report = changed.json()
    assert [(m["currency"], m["period"]) for m in report["months"] if m["flagged"]] == [("eur", "2024-03")]
    assert [(d["currency"], d["period"], d["difference"], d["responsible"], d["unexplained"]) for d in report["drilldown"]] == [
        ("eur", "2024-03", 4000, ["c_eu"], 0)
    ]
    checked = {c["customer"]: c for c in report["drilldown"][0]["customers"]}
    assert set(checked) == {"c_eu", "c_eu2"}
    assert (checked["c_eu"]["source"]["total_mrr"], checked["c_eu"]["growpanel"]["total_mrr"]) == (5000, 9000)
    assert checked["c_eu2"]["responsible"] is False
    assert "2024-03 (eur) differs by 40.00: 1 of the 2 customers checked differ" in text.stdout
    assert "  customer c_eu: MRR 50.00 in the source, 90.00 in GrowPanel (40.00)" in text.stdout
    customer_queries = [_query(r) for r in sandbox.requests() if r["path"] == "/reports/mrr" and _query(r).get("customer")]
    assert {q["customer"] for q in customer_queries[-2:]} == {"c_eu", "c_eu2"}
    # An API answering in the older shape (no filters) is compared with the unconverted sum, and says so
    with wire(sandbox, wire="legacy"):
        older = stack.cli("verify", "--mrr", "--json")
    assert older.code == 1
    summed = older.json()
    assert {m["currency"] for m in summed["months"]} == {None}
    assert [m["period"] for m in summed["months"] if m["flagged"]] == ["2024-03"]
    assert any("older shape, without currency filters" in w for w in summed["warnings"])
    assert any("flagged months cannot be drilled down" in w for w in summed["warnings"]) and summed["drilldown"] == []


def test_a_listing_that_ignores_offset_is_read_whole_through_count_and_limit(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    assert _import(stack, mapping_file(workdir, source_schema))["state"] == "succeeded"
    with wire(sandbox, listing_offset="ignore"):
        result = stack.cli("verify", "--page-size", "2", "--json")
        text = stack.cli("verify", "--page-size", "2")
    # Every row is read (no row counted twice, none missed), by one request of limit = count where needed
    assert result.code == 0, result.stderr + result.stdout
    doc = result.json()
    assert (_counts(doc, "plans"), _counts(doc, "customers"), _counts(doc, "invoices")) == (_clean(3), _clean(2), _clean(8))
    assert doc["listings"]["plans"] == {"strategy": "single request (limit = count)", "requests": 3, "rows": 3}
    assert doc["listings"]["customers"] == {"strategy": "offset paging", "requests": 1, "rows": 2}
    assert doc["listings"]["invoices"] == {"strategy": "single request (limit = count)", "requests": 3, "rows": 8}
    assert "invoices: single request (limit = count) (3 requests)" in text.stdout
    limits = [_query(r) for r in sandbox.requests() if r["path"] == "/data/invoices"][-3:]
    assert limits[-1].get("limit") == "8" and "offset" not in limits[-1]


@pytest.mark.parametrize(("shape", "names"), [("sdk", "camelCase"), ("legacy", "snake_case")])
def test_wait_processing_shows_the_counts_in_either_shape(shape: str, names: str, stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    with wire(sandbox, wire=shape):
        result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), "--wait-processing", "--json")
    assert result.code == 0, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("GrowPanel processing: done (enqueued 13, processed 13, failed 0)"), last
    processing = result.json()["growpanel_processing"]
    assert (processing["phase"], processing["processed_count"], processing["failed_count"], processing["wire"]) == ("done", 13, 0, names)
    assert processing["started_at"] and processing["last_activity_at"]
