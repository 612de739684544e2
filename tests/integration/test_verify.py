"""`verify` end to end: real runs through real workers into the sandbox, then the check, as a user runs it."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from backfill.api import GrowPanelClient
from backfill.settings import Settings
from console.verify.errors import CheckIncomplete
from console.verify.listing import ListingStats, listing_pages
from console.verify.pacing import LocalPacer
from console.verify.remote import RemoteApi
from tests.integration.scenarios import CUSTOMERS, INVOICES, PLANS, invoice, ts
from tests.support.services import Database, wait_until
from tests.support.sources import build_source, execute, mapping_file
from tests.support.stack import CliResult, SandboxView, Stack, cleared_faults, python_cli
from tests.unit import test_mrr_rules as story

ENTITIES = ("plans", "customers", "invoices")


def _verify(stack: Stack, *args: str, env: dict[str, str] | None = None) -> CliResult:
    return stack.cli("verify", *args, env=env)


def _counts(doc: dict[str, Any], entity: str) -> dict[str, int]:
    """The counters of one entity, without its examples."""
    return {k: v for k, v in doc["rows"][entity].items() if k != "examples"}


def _clean(n: int) -> dict[str, int]:
    return {"source": n, "growpanel": n, "matching": n, "missing": 0, "extra": 0, "different": 0, "expected_missing": 0}


def _import(stack: Stack, mapping: str, *args: str) -> dict[str, Any]:
    result = stack.cli("start", "--mapping", mapping, "--wait", "--json", *args)
    assert result.code in (0, 1), result.stderr
    return result.json()  # type: ignore[no-any-return]


def _post(sandbox: SandboxView, kind: str, rows: list[dict[str, Any]]) -> None:
    """Upsert rows straight into GrowPanel (as someone editing it by hand would)."""
    response = sandbox.api("POST", f"/data/{kind}", json=rows)
    assert response.status_code == 200, response.text
    assert all(r["export_status"] != "error" for r in response.json()["result"]), response.text


def _delete(sandbox: SandboxView, kind: str, ident: str) -> None:
    """Remove one stored row: the sandbox has no per-row DELETE, so reset and put back all the others."""
    stored = sandbox.ledger()
    assert any(obj["id"] == ident for obj in stored[kind])
    reset = sandbox.api("POST", f"/data/data-sources/{sandbox.data_source}/reset")
    assert reset.status_code == 200, reset.text
    for each in ENTITIES:
        rows = [obj for obj in stored[each] if not (each == kind and obj["id"] == ident)]
        rows.sort(key=lambda o: (o.get("customer_id", ""), o.get("date", ""), o["id"]))
        for start in range(0, len(rows), 500):
            _post(sandbox, each, rows[start : start + 500])
    assert sorted(o["id"] for o in sandbox.ledger()[kind]) == sorted(o["id"] for o in stored[kind] if o["id"] != ident)


def test_a_clean_run_verifies_with_no_difference(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given the guide's scenarios imported by a run
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    run = _import(stack, mapping_file(workdir, source_schema))
    assert run["state"] == "succeeded"
    # When the user verifies (the latest run of the data source by default)
    result = _verify(stack, "--json")
    # Then every row matches and the exit status says so
    assert result.code == 0, result.stderr
    doc = result.json()
    assert (doc["run_id"], doc["data_source"], doc["ok"]) == (run["run_id"], sandbox.data_source, True)
    assert {e: _counts(doc, e) for e in ENTITIES} == {"plans": _clean(3), "customers": _clean(2), "invoices": _clean(8)}
    assert all(doc["rows"][e]["examples"] == [] for e in ENTITIES)
    assert doc["months"] == [] and doc["warnings"] == []
    # The listings were read page by page, not in one request
    paged = _verify(stack, str(run["run_id"]), "--page-size", "3")
    assert paged.code == 0, paged.stderr
    listings = [r for r in sandbox.requests() if r["method"] == "GET" and r["path"] == "/data/invoices"]
    assert any("offset=6" in r["query"] for r in listings)
    # and the text report says the same to a person
    assert f"run {run['run_id']}, data source {sandbox.data_source}: GrowPanel holds exactly what the source says" in paged.stdout
    assert ["invoices", "8", "8", "8", "0", "0", "0", "0"] in [line.split() for line in paged.stdout.splitlines()]


def test_deleted_added_and_changed_rows_are_each_reported_exactly(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    _import(stack, mapping_file(workdir, source_schema))
    # Given GrowPanel loses an invoice, gains a plan the source never had, and has fields changed by hand
    _delete(sandbox, "invoices", "inv_003")
    ghost = {"id": "plan_ghost", "name": "Ghost", "billing_freq": "month", "currency": "usd", "data_source": sandbox.data_source}
    _post(sandbox, "plans", [ghost])
    stored = {kind: {o["id"]: o for o in objs} for kind, objs in sandbox.ledger().items()}
    _post(sandbox, "customers", [{**stored["customers"]["cust_123"], "name": "Acme Corp"}])
    _post(sandbox, "invoices", [{**stored["invoices"]["inv_005"], "amount_cents": 9901}])
    # ... and harmless rewrites that are not differences: the same instant in another ISO form, a default spelled out
    _post(sandbox, "customers", [{**stored["customers"]["cust_456"], "created_date": "2024-01-10T09:30:00+01:00"}])
    _post(sandbox, "plans", [{**stored["plans"]["plan_annual"], "billing_freq_count": 1}])
    _post(sandbox, "invoices", [{**stored["invoices"]["inv_101"], "quantity": 1, "date": "2024-01-17T00:00:00.000Z"}])
    # When the user verifies
    result = _verify(stack, "--json")
    # Then exactly those three differences are reported, each where it is, and the exit status is 1
    assert result.code == 1, result.stderr
    doc = result.json()
    assert doc["ok"] is False
    assert _counts(doc, "plans") == {**_clean(3), "growpanel": 4, "extra": 1}
    assert _counts(doc, "customers") == {**_clean(2), "matching": 1, "different": 1}
    assert _counts(doc, "invoices") == {**_clean(8), "growpanel": 7, "matching": 6, "missing": 1, "different": 1}
    assert doc["rows"]["plans"]["examples"] == [{"kind": "extra", "id": "plan_ghost"}]
    assert doc["rows"]["customers"]["examples"] == [
        {"kind": "different", "id": "cust_123", "fields": {"name": {"source": "Acme Inc", "growpanel": "Acme Corp"}}}
    ]
    assert doc["rows"]["invoices"]["examples"] == [
        {"kind": "missing", "id": "inv_003"},
        {"kind": "different", "id": "inv_005", "fields": {"amount_cents": {"source": 9900, "growpanel": 9901}}},
    ]
    text = _verify(stack)
    assert text.code == 1
    assert "DIFFERENCES — 4 rows differ" in text.stdout
    assert "invoices missing in GrowPanel:\n  inv_003" in text.stdout
    assert "plans in GrowPanel but not in the source:\n  plan_ghost" in text.stdout
    assert "cust_123 — name: 'Acme Inc' in the source, 'Acme Corp' in GrowPanel" in text.stdout
    # A source changed after the run is compared as it is now: the fix on the source side clears a difference
    execute(source_db.url, f"UPDATE {source_schema}.customers SET name = 'Acme Corp' WHERE id = 'cust_123'")
    assert _counts(_verify(stack, "--json").json(), "customers") == _clean(2)


def test_rows_rejected_in_the_run_are_reported_as_expected_missing(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given a run that rejected rows locally (invalid), as dependants (skipped) and at the API (error)
    customers = [
        {"id": "c_ok", "name": "Fine", "created_date": ts("2024-01-01"), "country": "us"},
        {"id": "c_noname", "created_date": ts("2024-01-01"), "country": "us"},
    ]
    invoices = [
        invoice("i_ok", "c_ok", "subscription", "2024-01-01", 9900, "plan_pro", "2024-02-01"),
        invoice("i_negative", "c_ok", "subscription", "2024-02-01", -1, "plan_pro", "2024-03-01"),
        invoice("i_dup", "c_ok", "one-time", "2024-05-01", 100),
        invoice("i_dup", "c_ok", "one-time", "2024-05-02", 200),
        invoice("i_orphan", "c_noname", "one-time", "2024-05-01", 100),
        invoice("i_unknown_customer", "c_nowhere", "one-time", "2024-05-01", 100),
    ]
    build_source(source_db.url, source_schema, PLANS, customers, invoices)
    run = _import(stack, mapping_file(workdir, source_schema))
    assert run["state"] == "completed_with_errors"
    # When the user verifies that run
    result = _verify(stack, str(run["run_id"]), "--json")
    # Then the rejected rows are missing as expected, not differences: the check passes
    assert result.code == 0, result.stderr
    doc = result.json()
    assert _counts(doc, "customers") == {**_clean(2), "growpanel": 1, "matching": 1, "expected_missing": 1}
    assert _counts(doc, "invoices") == {**_clean(5), "growpanel": 1, "matching": 1, "expected_missing": 4}
    expected = {(e["id"], e["outcome"]): e["message"] for e in doc["rows"]["invoices"]["examples"]}
    assert expected == {
        ("i_dup", "invalid"): "id appears 2 times in the source",
        ("i_negative", "invalid"): "amount_cents must not be negative, got -1",
        ("i_orphan", "skipped"): expected[("i_orphan", "skipped")],
        ("i_unknown_customer", "error"): "Customer ID c_nowhere does not exist",
    }
    assert "c_noname was rejected" in expected[("i_orphan", "skipped")]
    assert doc["rows"]["customers"]["examples"] == [
        {"kind": "expected_missing", "id": "c_noname", "outcome": "invalid", "message": "name or email is required"}
    ]
    text = _verify(stack, str(run["run_id"]))
    assert "(5 rows rejected in the run are missing, as expected)" in text.stdout
    assert "i_unknown_customer — error: Customer ID c_nowhere does not exist" in text.stdout
    # A source row that fails the checks but that nobody rejected (added after the run) is a surprise
    execute(source_db.url, f"INSERT INTO {source_schema}.customers (id, created_date, country) VALUES ('c_new', now(), 'zz')")
    later = _verify(stack, str(run["run_id"]), "--json")
    assert later.code == 1
    assert later.json()["rows"]["customers"]["examples"][0] == {
        "kind": "missing", "id": "c_new",
        "reason": "the source row cannot be sent: country must be an ISO 3166-1 alpha-2 country code, got 'zz'; name or email is required",
    }


def test_ids_merge_in_code_point_order_whatever_the_source_collation(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given ids whose order differs between a linguistic collation and code points, in an ICU-collated column
    ids = ["Zeta", "alpha", "Ärger", "10", "9", "a-b", "a_b", "ab", "B", "日本", "_x", "é"]
    plans = [{"id": i, "name": f"Plan {i}", "billing_freq": "month", "currency": "usd"} for i in ids]
    build_source(source_db.url, source_schema, plans, [], [])
    execute(source_db.url, f'ALTER TABLE {source_schema}.plans ALTER COLUMN id TYPE text COLLATE "und-x-icu"')
    mapping = mapping_file(workdir, source_schema, plans=f"SELECT * FROM {source_schema}.plans ORDER BY id")
    _import(stack, mapping)
    # When verified, every id pairs with itself: nothing is reported missing on one side and extra on the other
    result = _verify(stack, "--json")
    assert result.code == 0, result.stderr
    assert _counts(result.json(), "plans") == _clean(len(ids))


def test_start_verify_imports_and_proves_in_one_command(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    mapping = mapping_file(workdir, source_schema)
    # When the user imports with --verify (no --wait needed)
    result = stack.cli("start", "--mapping", mapping, "--verify", "--json")
    # Then the run is waited for, verified, and both verdicts are in the document
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["state"] == "succeeded"
    assert doc["verify"]["complete"] is True and doc["verify"]["ok"] is True
    assert _counts(doc["verify"], "invoices") == _clean(8)
    assert "GrowPanel holds exactly what the source says" in result.stderr
    # Given GrowPanel then holds a plan the source does not, a second identical import still succeeds
    # row by row (every row unchanged) but --verify turns the exit status to 1
    _post(sandbox, "plans", [{"id": "plan_x", "name": "X", "billing_freq": "week", "currency": "usd", "data_source": sandbox.data_source}])
    again = stack.cli("start", "--mapping", mapping, "--verify", "--json")
    assert again.code == 1, again.stderr
    doc = again.json()
    assert doc["state"] == "succeeded"
    assert doc["verify"]["rows"]["plans"]["extra"] == 1
    assert "plans in GrowPanel but not in the source:\n  plan_x" in again.stderr


def _story_source(source_db: Database, schema: str) -> None:
    """The hand-worked MRR story of tests/unit/test_mrr_rules.py as source rows."""

    def when(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)

    customers = [{**c, "created_date": when(c["created_date"])} for c in story.CUSTOMERS]
    invoices = [
        {**i, **{f: when(i[f]) for f in ("date", "start_date", "end_date")}} for i in story.INVOICES
    ]
    build_source(source_db.url, schema, story.PLANS, customers, invoices)


def _wait_for_mrr_report(sandbox: SandboxView) -> None:
    """GET /reports/mrr exists (the sandbox's side of issue 7): fail clearly, do not skip, while it does not."""

    def available() -> bool:
        return sandbox.api("GET", "/reports/mrr", params={"interval": "month", "breakdown": "data_source"}).status_code != 404

    wait_until(available, 5, interval=0.5, message="the sandbox to serve GET /reports/mrr (docs/mrr.md)")


def test_month_table_equals_the_hand_worked_figures_and_growpanel(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    # Given the story (upgrade, downgrade, churn, return, refunds on monthly, quarterly and annual plans) imported
    _story_source(source_db, source_schema)
    run = _import(stack, mapping_file(workdir, source_schema))
    assert run["state"] == "succeeded"
    _wait_for_mrr_report(sandbox)
    # When the user verifies with --mrr
    result = _verify(stack, "--mrr", "--json")
    # Then the source's months are the figures worked out by hand, GrowPanel's agree, nothing is flagged
    assert result.code == 0, result.stderr + result.stdout
    doc = result.json()
    hand = {m["period"]: {k: v for k, v in m.items() if k != "period"} for m in story.expected_months()}
    assert [m["period"] for m in doc["months"]] == list(hand)
    assert {m["period"]: m["source"] for m in doc["months"]} == hand
    for month in doc["months"]:
        assert {k: month["growpanel"][k] for k in hand[month["period"]]} == hand[month["period"]]
        assert (month["difference"], month["flagged"]) == (0, False)
    assert doc["tolerance_percent"] == 1.0
    text = _verify(stack, "--mrr")
    rows = [line.split() for line in text.stdout.splitlines()]
    assert ["2024-11", "95.00", "95.00", "0.00", "0.00%", "1", "1"] in rows
    assert ["2024-12", "183.25", "183.25", "0.00", "0.00%", "2", "2"] in rows
    # Given GrowPanel's copy of c_three's annual invoice is changed (99900 -> 109900: 8325 -> 9158 a month)
    stored = {o["id"]: o for o in sandbox.ledger()["invoices"]}
    _post(sandbox, "invoices", [{**stored["u01"], "amount_cents": 109900}])
    # Then the months where c_three has MRR are flagged (all differ by more than 1 %), the others not
    changed = _verify(stack, "--mrr", "--json")
    assert changed.code == 1
    flags = {m["period"]: m["flagged"] for m in changed.json()["months"]}
    assert [p for p, f in flags.items() if f] == ["2024-06", "2024-07", "2024-08", "2024-09", "2024-10", "2024-12"]
    june = next(m for m in changed.json()["months"] if m["period"] == "2024-06")
    assert (june["difference"], june["difference_percent"]) == (833, round(833 * 100 / 17325, 4))
    # and a wider tolerance flags only the months beyond it: +833 is 4.8 % of June, 10 % of July and
    # August, 15.6 % of September (5325), 4.5 % of October and December (the row difference still fails)
    wide = _verify(stack, "--mrr", "--tolerance", "5%", "--json")
    assert wide.code == 1
    assert [m["period"] for m in wide.json()["months"] if m["flagged"]] == ["2024-07", "2024-08", "2024-09"]


def test_a_check_that_cannot_complete_exits_2_with_one_line(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    _import(stack, mapping_file(workdir, source_schema))
    with cleared_faults(sandbox):
        # The API down for every retry
        sandbox.faults(outage=True, paths=["/data/"])
        down = _verify(stack)
        assert down.code == 2
        assert down.stderr.strip().count("\n") == 0
        assert "verify could not complete: GET /data/plans failed after 6 attempts: HTTP 503" in down.stderr
        # Transient errors are retried like the importer's, and the check completes
        sandbox.faults(outage=False, error_rate=0.4, seed=3, paths=["/data/"])
        flaky = _verify(stack, "--page-size", "2", "--json")
        assert flaky.code == 0, flaky.stderr
        assert any(r["fault"] == "error" for r in sandbox.requests())
    # A refused key
    refused = _verify(stack, env={"GROWPANEL_API_KEY": "not-a-key"})
    assert refused.code == 2
    assert "the API refused the key (HTTP 401" in refused.stderr
    # A source that cannot be reached is a configuration error, as for every command; an unknown run
    unreachable = _verify(stack, env={"SOURCE_DATABASE_URL": "postgresql://127.0.0.1:1/nowhere"})
    assert unreachable.code == 3 and "SOURCE_DATABASE_URL: cannot connect" in unreachable.stderr
    unknown = _verify(stack, "999999")
    assert (unknown.code, unknown.stderr.strip()) == (2, "growpanel-backfill: verify could not complete: there is no run 999999")


def test_rate_limit_is_respected_and_429_waited_out(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    _import(stack, mapping_file(workdir, source_schema))
    with cleared_faults(sandbox):
        sandbox.faults(rate_limit=4)
        sandbox.client.delete("/_sandbox/requests")
        # Without GROWPANEL_MAX_RPS, 1-row pages (13 requests) hit the sandbox's limit: 429s are waited out
        unpaced = _verify(stack, "--page-size", "1", "--json")
        assert unpaced.code == 0, unpaced.stderr
        throttled = [r for r in sandbox.requests() if r["status"] == 429]
        assert throttled
        # With GROWPANEL_MAX_RPS at the API's rate, the same check never gets a 429
        sandbox.client.delete("/_sandbox/requests")
        paced = _verify(stack, "--page-size", "1", "--json", env={"GROWPANEL_MAX_RPS": "3.5"})
        assert paced.code == 0, paced.stderr
        gets = [r for r in sandbox.requests() if r["method"] == "GET"]
        assert len(gets) == 13 and not [r for r in gets if r["status"] == 429]


def test_a_listing_that_ignores_offset_and_gives_no_count_stops_the_check() -> None:
    # Given an API whose listing answers the first page whatever the offset, with no `count` to size one request by
    def handler(request: httpx.Request) -> httpx.Response:
        rows = [{"id": f"c{n}"} for n in range(int(request.url.params["limit"]))]
        return httpx.Response(200, json={"result": {"list": rows}})

    client = GrowPanelClient("http://growpanel.test", transport=httpx.MockTransport(handler))
    api = RemoteApi(client, "key", Settings(), LocalPacer(None))
    pages = listing_pages(api, "customers", "ds", ListingStats(), page_size=10)
    # Then the second, identical page stops the check instead of looping or counting rows twice
    with pytest.raises(CheckIncomplete, match="ignores `offset`.*announces no `count`"):
        next(pages)


def _peak_rss_kb(stack: Stack, *args: str) -> tuple[int, CliResult]:
    """Run the CLI and return its peak resident memory (ru_maxrss of exactly that child), and what it printed."""
    process = subprocess.Popen(
        [*python_cli(), *args], env={**os.environ, **stack.env}, cwd=stack.workdir,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss, CliResult(process.returncode, out.decode(), err.decode())


@pytest.mark.slow
def test_memory_stays_flat_on_a_source_ten_times_larger(stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path) -> None:
    from demo.seed import SeedShape, seed

    big_env = {"BATCH_SIZE": "500"}
    peaks = {}
    for label, customers in (("small", 150), ("large", 1500)):
        schema = f"{source_schema}_{label}"
        counts = seed(source_db.url, schema, SeedShape(customers=customers, years=2, whales=0, bad_rows=False))
        run = stack.cli("start", "--mapping", mapping_file(workdir, schema), "--reset-data-source", "--yes", "--wait", "--json", env=big_env)
        assert run.code == 0, run.stderr
        rss, result = _peak_rss_kb(stack, "verify", "--json")
        assert result.code == 0, result.stderr
        doc = orjson.loads(result.stdout)
        assert doc["rows"]["invoices"]["matching"] == counts["invoices"]
        peaks[label] = (rss, counts["customers"] + counts["invoices"])
    (small_rss, small_rows), (large_rss, large_rows) = peaks["small"], peaks["large"]
    assert large_rows >= 9 * small_rows
    # Holding either side in memory would cost ~2 KB a row, some 30 MB more for the large source;
    # streaming both sides leaves the peak where it was (one page, one fetch, one customer).
    assert large_rss - small_rss < 8 * 1024, peaks


def test_a_listing_that_ignores_offset_and_caps_limit_below_count_stops_the_check() -> None:
    # Given an API that ignores `offset` and never answers more than 10 rows, of 25
    def handler(request: httpx.Request) -> httpx.Response:
        limit = min(int(request.url.params["limit"]), 10)
        return httpx.Response(200, json={"result": {"count": 25, "list": [{"id": f"c{n:02d}"} for n in range(limit)]}})

    client = GrowPanelClient("http://growpanel.test", transport=httpx.MockTransport(handler))
    api = RemoteApi(client, "key", Settings(), LocalPacer(None))
    stats = ListingStats()
    pages = listing_pages(api, "customers", "ds", stats, page_size=10)
    # Then the single request of limit=25 is tried, and its 10 rows stop the check: no strategy reads all 25
    with pytest.raises(CheckIncomplete, match=r"one request with limit=25 answered 10 of 25 rows: the API caps `limit`"):
        next(pages)
    assert (stats.pages, stats.strategy) == (3, "single request (limit = count)")
