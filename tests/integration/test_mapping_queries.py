"""Any valid single SELECT is a mapping query, end to end: start, workers, the sandbox, verify."""

from __future__ import annotations

from pathlib import Path

from tests.integration.scenarios import CUSTOMERS, INVOICES, PLANS
from tests.integration.promise import check_promise
from tests.support.services import Database
from tests.support.sources import build_source, mapping_file
from tests.support.stack import SandboxView, Stack


def test_comments_a_final_semicolon_ctes_union_and_windows_import_every_row(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    s = source_schema
    mapping = mapping_file(
        workdir,
        s,
        name="queries.toml",
        plans=f"/* every plan */ SELECT * FROM {s}.plans WHERE id <> 'plan_annual'\nUNION ALL\n"
              f"SELECT * FROM {s}.plans WHERE id = 'plan_annual'; -- the annual one too",
        customers=f"WITH c AS (SELECT * FROM {s}.customers) -- a CTE\nSELECT * FROM c;\n/* done */",
        invoices=f"SELECT id, customer_id, plan_id, type, date, amount_cents, currency, start_date, end_date,\n"
                 f"  (row_number() OVER (PARTITION BY customer_id ORDER BY date) > 0)::int AS quantity -- a window\n"
                 f"FROM {s}.invoices -- last line is a comment",
    )
    result = stack.cli("start", "--mapping", mapping, "--wait", "--json")
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    check_promise(stack, sandbox, run_id, source_db.url, source_schema)
    ledger = sandbox.ledger()
    assert {p["id"] for p in ledger["plans"]} == {p["id"] for p in PLANS}
    assert {c["id"] for c in ledger["customers"]} == {c["id"] for c in CUSTOMERS}
    assert {i["id"] for i in ledger["invoices"]} == {i["id"] for i in INVOICES}
    verified = stack.cli("verify", str(run_id))
    assert verified.code == 0, verified.stdout + verified.stderr
