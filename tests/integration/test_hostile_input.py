"""Bad input, tried on purpose: a source that breaks every documented rule, plus hostile data.

Through the real CLI, a worker and the sandbox. For every hostile row the test states its exact audit
outcome and message, or the exact JSON GrowPanel ends up holding; no batch may fail, the run must
complete, and the valid rows around the bad ones must be stored. A customer with 20,000 invoices
rides along in the same run: stored whole, in order, as a chain of batches.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support.services import Database
from tests.support.sources import create_table, insert_rows, mapping_file
from tests.support.stack import SandboxView, Stack

PLAN_TYPES = {"id": "text", "name": "text", "billing_freq": "text", "billing_freq_count": "float8", "currency": "text", "product_name": "text"}
CUSTOMER_TYPES = {
    "id": "text",
    "name": "text",
    "email": "text",
    "created_date": "timestamp",  # without time zone: taken as UTC
    "country": "text",
    "state": "text",
    "trial_started": "text",  # ISO 8601 text, parsed and rewritten
    "custom_variables": "jsonb",
}
INVOICE_TYPES = {
    "id": "text",
    "customer_id": "text",
    "plan_id": "text",
    "type": "text",
    "date": "timestamptz",
    "amount_cents": "numeric",
    "currency": "text",
    "start_date": "date",
    "end_date": "text",
    "payment_date": "timestamp",
    "quantity": "float8",
    "proration": "boolean",
    "discount": "bigint",
}

RTL = "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202eevil\u202c"
EMOJI = "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 Family \U0001f1e9\U0001f1f0 \U0001f9fe"
COMBINING = "Ame\u0301lie Z\u0351\u0310a\u0336lgo\u0337"
TEN_KB = ("Grand \u03a9 Company \u2014 Ltd " * 500)[:10240]
LONG_ID = "L" * 600
WHALE_INVOICES = 20_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _cut(text: str) -> str:
    """How messages show a long text: its repr cut to 60 characters."""
    return repr(text)[:57] + "..."


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# Each source row with what must become of it: ("stored", the JSON GrowPanel holds) or (outcome, message).
Expect = tuple[str, Any]


def plan_rows() -> list[tuple[dict[str, Any], Expect]]:
    def ok(row: dict[str, Any], **sent: Any) -> tuple[dict[str, Any], Expect]:
        stored = {"id": row["id"], "name": row["name"], "billing_freq": row["billing_freq"], "currency": "usd", **sent}
        return row, ("stored", {k: v for k, v in stored.items() if v is not None})

    base = {"name": "Pro", "billing_freq": "month", "currency": "usd"}
    return [
        ok({"id": "p_ok", **base}),
        ok({"id": "p_upper", **base, "currency": " EUR "}, currency="eur"),
        ok({"id": "p_jpy", **base, "currency": "JPY"}, currency="jpy"),
        ok({"id": "p_quarter", **base, "billing_freq": "quarter"}, billing_freq="month", billing_freq_count=3),
        ok({"id": "p_half_year", **base, "billing_freq": "half_year", "billing_freq_count": 2.0}, billing_freq="month", billing_freq_count=12),
        ok({"id": "p_float_count", **base, "billing_freq_count": 3.0}, billing_freq_count=3),
        ok({"id": "p_unicode", **base, "name": EMOJI + RTL}),
        ({"id": "p_badfreq", **base, "billing_freq": "monthly"}, ("invalid", "billing_freq must be one of day, week, month, year, got 'monthly'")),
        ({"id": "p_count_zero", **base, "billing_freq_count": 0.0}, ("invalid", "billing_freq_count must be a positive integer, got 0.0")),
        ({"id": "p_count_frac", **base, "billing_freq_count": 1.5}, ("invalid", "billing_freq_count must be an integer, got 1.5")),
        ({"id": "p_noname", **base, "name": None}, ("invalid", "name is required")),
        ({"id": "p_emptyname", **base, "name": ""}, ("invalid", "name is required")),
        ({"id": "p_badcur", **base, "currency": "usdollar"}, ("invalid", "currency must be an ISO 4217 currency code, got 'usdollar'")),
        ({"id": "p_nocur", **base, "currency": None}, ("invalid", "currency is required")),
        ({"id": "p_dup", **base, "name": "First"}, ("invalid", "id appears 2 times in the source")),
        ({"id": "p_dup", **base, "name": "Second"}, ("invalid", "id appears 2 times in the source")),
        ({"id": None, **base, "name": "No id"}, ("invalid", "id is required")),
    ]


def customer_rows() -> list[tuple[dict[str, Any], Expect]]:
    created = datetime(2024, 1, 15, 10, 20, 30)

    def ok(row: dict[str, Any], **sent: Any) -> tuple[dict[str, Any], Expect]:
        full = {"name": "Plain", "created_date": created, "country": "us", **row}
        stored = {
            "id": full["id"],
            "name": full["name"],
            "created_date": "2024-01-15T10:20:30Z",
            "country": "us",
            **sent,
        }
        return full, ("stored", {k: v for k, v in stored.items() if v is not None})

    def bad(row: dict[str, Any], message: str, outcome: str = "invalid") -> tuple[dict[str, Any], Expect]:
        return {"name": "Plain", "created_date": created, "country": "us", **row}, (outcome, message)

    return [
        ok({"id": "c_ok"}),
        ok({"id": "c_whale", "name": "Whale"}),
        ok({"id": "c_long_name", "name": TEN_KB}),
        ok({"id": "c_rtl", "name": RTL}),
        ok({"id": "c_emoji", "name": EMOJI, "email": "\U0001f600@example.test"}, email="\U0001f600@example.test"),
        ok({"id": "c_combining", "name": COMBINING}),
        ok({"id": "c_sql", "name": "Robert'); DROP TABLE customers;--", "email": "' OR '1'='1"}, email="' OR '1'='1"),
        ok({"id": "c_json_name", "name": '{"id": "c_other", "data_source": "ds_evil"}'}),
        ok({"id": "c_literal_escape", "name": "back\\u0000slash"}),
        ok({"id": "c_spaces", "name": "  Acme  "}),
        ok(
            {"id": "c_variables", "custom_variables": {"__proto__": {"polluted": True}, "quote": "\"'`", "nested": {"a": [1, "two", None]}}},
            custom_variables={"__proto__": {"polluted": True}, "quote": "\"'`", "nested": {"a": [1, "two", None]}},
        ),
        ok({"id": "c_upper", "country": " DK ", "state": " CA "}, country="dk", state="ca"),
        ok({"id": "c_naive_precise", "created_date": datetime(2024, 1, 15, 10, 20, 30, 123456)}, created_date="2024-01-15T10:20:30.123456Z"),
        ok({"id": "c_far_past", "created_date": datetime(1, 1, 1)}, created_date="0001-01-01T00:00:00Z"),
        ok({"id": "c_far_future", "created_date": datetime(9999, 12, 31, 23, 59, 59, 999999)}, created_date="9999-12-31T23:59:59.999999Z"),
        ok({"id": "c_trial_offset", "trial_started": "2024-01-10T08:00:00.1234567+02:00"}, trial_started="2024-01-10T06:00:00.1234567Z"),
        ok({"id": "c_trial_date", "trial_started": "2024-01-10"}, trial_started="2024-01-10T00:00:00Z"),
        ok({"id": "c_email_only", "name": None, "email": "ops@x.test"}, email="ops@x.test"),
        bad({"id": "c_infinity", "created_date": "infinity"}, "created_date cannot be sent as an ISO 8601 date (years 0001-9999), got 'infinity'"),
        bad({"id": "c_bc", "created_date": "0044-03-15 12:00:00 BC"}, "created_date cannot be sent as an ISO 8601 date (years 0001-9999), got '0044-03-15 12:00:00 BC'"),
        bad({"id": "c_year_10000", "created_date": "10000-01-01 00:00:00"}, "created_date cannot be sent as an ISO 8601 date (years 0001-9999), got '10000-01-01 00:00:00'"),
        bad({"id": "c_nocreated", "created_date": None}, "created_date is required"),
        bad({"id": "c_trial_bad", "trial_started": "next tuesday"}, "trial_started is not an ISO 8601 date, got 'next tuesday'"),
        bad({"id": "c_trial_overflow", "trial_started": "0001-01-01T00:00:00+01:00"}, "trial_started falls outside the years 0001-9999 once converted to UTC, got '0001-01-01T00:00:00+01:00'"),
        bad({"id": "c_noname", "name": None}, "name or email is required"),
        bad({"id": "c_empty_strings", "name": "", "email": ""}, "name or email is required"),
        bad({"id": "c_nocountry", "country": None}, "country is required"),
        bad({"id": "c_badcountry", "country": "USA"}, "country must be an ISO 3166-1 alpha-2 country code, got 'USA'"),
        bad({"id": "c_cv_array", "custom_variables": "[1, 2]"}, "custom_variables must be a JSON object, got an array [1,2]"),
        bad(
            {"id": "c_everything_wrong", "name": None, "created_date": "infinity", "country": "zz"},
            "created_date cannot be sent as an ISO 8601 date (years 0001-9999), got 'infinity'; "
            "country must be an ISO 3166-1 alpha-2 country code, got 'zz'; name or email is required",
        ),
        bad({"id": "c_dup", "name": "First"}, "id appears 2 times in the source"),
        bad({"id": "c_dup", "name": "Second"}, "id appears 2 times in the source"),
        bad({"id": LONG_ID}, f"id must be at most 512 characters, got 600 characters: {_cut(LONG_ID)}"),
    ]


def invoice_rows() -> list[tuple[dict[str, Any], Expect]]:
    day = datetime(2024, 3, 1, tzinfo=timezone.utc)
    base = {
        "customer_id": "c_ok",
        "plan_id": "p_ok",
        "type": "subscription",
        "date": day,
        "amount_cents": Decimal(9900),
        "currency": "usd",
        "start_date": date(2024, 3, 1),
        "end_date": "2024-04-01",
    }
    sent_base = {
        "customer_id": "c_ok",
        "plan_id": "p_ok",
        "type": "subscription",
        "date": "2024-03-01T00:00:00Z",
        "amount_cents": 9900,
        "currency": "usd",
        "start_date": "2024-03-01T00:00:00Z",
        "end_date": "2024-04-01T00:00:00Z",
    }
    rows: list[tuple[dict[str, Any], Expect]] = []

    def ok(iid: str, row: dict[str, Any], **sent: Any) -> None:
        stored = {"id": iid, **sent_base, **sent}
        rows.append(({**base, "id": iid, **row}, ("stored", {k: v for k, v in stored.items() if v is not None})))

    def bad(iid: str, row: dict[str, Any], message: str, outcome: str = "invalid") -> None:
        rows.append(({**base, "id": iid, **row}, (outcome, message)))

    ok(
        "i_precise",
        {"date": datetime(2024, 1, 15, 10, 20, 30, 123456, tzinfo=timezone.utc), "payment_date": datetime(2024, 1, 16, 9, 0, 0, 500000)},
        date="2024-01-15T10:20:30.123456Z",
        payment_date="2024-01-16T09:00:00.5Z",
    )
    ok("i_offset", {"date": datetime(2024, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))}, date="2024-02-29T19:00:00Z")
    ok("i_far_past", {"date": datetime(1, 1, 1, tzinfo=timezone.utc), "start_date": date(1, 1, 1)}, date="0001-01-01T00:00:00Z", start_date="0001-01-01T00:00:00Z")
    ok("i_far_future", {"date": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc), "end_date": "9999-12-31T23:59:59.999999Z"},
       date="9999-12-31T23:59:59.999999Z", end_date="9999-12-31T23:59:59.999999Z")
    ok("i_over_2_31", {"amount_cents": Decimal(2**31 + 1)}, amount_cents=2**31 + 1)
    ok("i_max_safe", {"amount_cents": Decimal(2**53 - 1)}, amount_cents=2**53 - 1)
    ok("i_float_ints", {"amount_cents": Decimal("9900.00"), "quantity": 3.0, "discount": 0}, quantity=3, discount=0)
    ok("i_upper_currency", {"currency": " USD "})
    ok("i_plan_currency_differs", {"plan_id": "p_jpy"}, plan_id="p_jpy")
    ok("i_quarter_plan", {"plan_id": "p_quarter", "proration": True}, plan_id="p_quarter", proration=True)
    ok("inv'; DELETE FROM audit; --", {"type": "one-time", "plan_id": None}, type="one-time", plan_id=None)
    ok("\u767a\u7968-\u21161-\U0001f9fe", {"type": "refund", "plan_id": None}, type="refund", plan_id=None)
    ok("i_cancel", {"type": "cancellation", "plan_id": None, "amount_cents": Decimal(0)}, type="cancellation", plan_id=None, amount_cents=0)
    ok("i_long_customer_name", {"customer_id": "c_long_name"}, customer_id="c_long_name")
    bad("i_over_2_53", {"amount_cents": Decimal(2**53)}, "amount_cents is too large to send exactly as a JSON number (over 2^53-1), got 9007199254740992")
    bad("i_1e30", {"amount_cents": Decimal("1E+30")}, "amount_cents is too large to send exactly as a JSON number (over 2^53-1), got 1000000000000000000000000000000")
    bad("i_frac_amount", {"amount_cents": Decimal("99.5")}, "amount_cents must be an integer, got 99.5")
    bad("i_negative", {"amount_cents": Decimal(-100)}, "amount_cents must not be negative, got -100")
    bad("i_noamount", {"amount_cents": None}, "amount_cents is required")
    bad("i_frac_qty", {"quantity": 1.5}, "quantity must be an integer, got 1.5")
    bad("i_nan_qty", {"quantity": "NaN"}, "quantity must be an integer, got nan")
    bad("i_zero_qty", {"quantity": 0.0}, "quantity must be a positive integer, got 0.0")
    bad("i_negative_discount", {"discount": -5}, "discount must not be negative, got -5")
    bad("i_badtype", {"type": "upgrade"}, "type must be one of subscription, one-time, refund, cancellation, got 'upgrade'")
    bad("i_notype", {"type": None}, "type is required")
    bad("i_sub_noplan", {"plan_id": None}, "plan_id is required when type is subscription")
    bad("i_nodate", {"date": None}, "date is required")
    bad("i_date_infinity", {"date": "infinity"}, "date cannot be sent as an ISO 8601 date (years 0001-9999), got 'infinity'")
    bad("i_start_bc", {"start_date": "0100-01-01 BC"}, "start_date cannot be sent as an ISO 8601 date (years 0001-9999), got '0100-01-01 BC'")
    bad("i_end_feb30", {"end_date": "2024-02-30"}, "end_date is not an ISO 8601 date, got '2024-02-30'")
    bad("i_end_missing", {"end_date": ""}, "end_date is required")
    bad("i_badcurrency", {"currency": "dollars"}, "currency must be an ISO 4217 currency code, got 'dollars'")
    bad("i_nocustomer", {"customer_id": None}, "customer_id is required")
    bad("i_dup", {"amount_cents": Decimal(1)}, "id appears 2 times in the source")
    bad("i_dup", {"amount_cents": Decimal(2)}, "id appears 2 times in the source")
    bad("i_unknown_customer", {"customer_id": "c_nowhere", "type": "one-time", "plan_id": None}, "Customer ID c_nowhere does not exist", "error")
    bad("i_unknown_plan", {"plan_id": "p_nowhere"}, "Plan ID p_nowhere does not exist", "error")
    bad("i_of_badcountry", {"customer_id": "c_badcountry"},
        "customer c_badcountry was rejected in this run (invalid: country must be an ISO 3166-1 alpha-2 country code, got 'USA')", "skipped")
    bad("i_of_dup_customer", {"customer_id": "c_dup"}, "customer c_dup was rejected in this run (invalid: id appears 2 times in the source)", "skipped")
    bad("i_of_badplan", {"plan_id": "p_badfreq"},
        "plan p_badfreq was rejected in this run (invalid: billing_freq must be one of day, week, month, year, got 'monthly')", "skipped")
    bad("i_of_long_id_customer", {"customer_id": LONG_ID, "type": "one-time", "plan_id": None},
        f"customer_id must be at most 512 characters, got 600 characters: {_cut(LONG_ID)}")
    bad(None, {}, "id is required")  # type: ignore[arg-type]
    return rows


def whale_rows() -> list[dict[str, Any]]:
    """20,000 invoices of one customer, one a day; ids run backwards so only the date can give the order."""
    rows = []
    for n in range(WHALE_INVOICES):
        when = EPOCH + timedelta(days=n)
        rows.append({
            "id": f"w{WHALE_INVOICES - 1 - n:05d}",
            "customer_id": "c_whale",
            "plan_id": "p_ok",
            "type": "subscription",
            "date": when,
            "amount_cents": Decimal(1000 + n % 97),
            "currency": "usd",
            "start_date": when.date(),
            "end_date": (when + timedelta(days=1)).date().isoformat(),
        })
    return rows


def whale_sent(row: dict[str, Any], data_source: str) -> dict[str, Any]:
    return {
        "id": row["id"], "customer_id": "c_whale", "plan_id": "p_ok", "type": "subscription", "date": _iso(row["date"]),
        "amount_cents": int(row["amount_cents"]), "currency": "usd", "start_date": _iso(row["date"]),
        "end_date": row["end_date"] + "T00:00:00Z", "data_source": data_source,
    }


def build_hostile_source(url: str, schema: str, whale: list[dict[str, Any]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table, types, rows in (
            ("plans", PLAN_TYPES, [r for r, _ in plan_rows()]),
            ("customers", CUSTOMER_TYPES, [r for r, _ in customer_rows()]),
            ("invoices", INVOICE_TYPES, [r for r, _ in invoice_rows()] + whale),
        ):
            create_table(conn, schema, table, types)
            insert_rows(conn, schema, table, rows, list(types))


def _ledger(sandbox: SandboxView) -> dict[str, dict[str, dict[str, Any]]]:
    data = sandbox.client.get("/_sandbox/ledger", params={"source": sandbox.data_source}).json()
    kinds = data.get(sandbox.data_source, {})
    return {kind: {obj["id"]: obj for obj in kinds.get(kind, [])} for kind in ("plans", "customers", "invoices")}


def test_hostile_source_gives_every_row_a_clear_outcome_and_nothing_else_is_affected(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a source that breaks every documented rule, holds hostile values, and a customer with 20,000 invoices
    whale = whale_rows()
    build_hostile_source(source_db.url, source_schema, whale)
    expected = {"plans": plan_rows(), "customers": customer_rows(), "invoices": invoice_rows()}
    ds = sandbox.data_source
    # When the user runs a backfill with the largest batches allowed
    result = stack.cli(
        "start", "--mapping", mapping_file(workdir, source_schema), "--wait", "--json", env={"BATCH_SIZE": "1000"}, timeout=600
    )
    # Then the run completes, with rejected rows (exit 1), and no batch failed or was retried
    assert result.code == 1, result.stderr
    doc = result.json()
    run_id = doc["run_id"]
    assert doc["state"] == "completed_with_errors"
    batches = stack.sql("SELECT state, attempts, last_error FROM batches WHERE run_id = :r", r=run_id)
    assert {(b["state"], b["attempts"] <= 1, b["last_error"]) for b in batches} == {("done", True, None)}
    attempts = stack.sql(
        "SELECT a.http_status, a.error FROM batch_attempts a JOIN batches b ON b.id = a.batch_id WHERE b.run_id = :r", r=run_id
    )
    assert attempts and {(a["http_status"], a["error"]) for a in attempts} == {(200, None)}

    # and every hostile row has exactly its expected outcome and message,
    audit = stack.audit(run_id)
    no_id = sorted((k[0], r["message"]) for k, r in audit.items() if k[1].startswith("(no id: source row "))
    assert no_id == sorted([
        ("customers", f"id must be at most 512 characters, got 600 characters: {_cut(LONG_ID)}"),
        ("invoices", "id is required"),
        ("plans", "id is required"),
    ])
    assert all(audit[k]["outcome"] == "invalid" for k in audit if k[1].startswith("(no id: source row "))
    stored = _ledger(sandbox)
    for entity, rows in expected.items():
        for row, (outcome, detail) in rows:
            if row["id"] is None or row["id"] == LONG_ID:
                continue
            got = audit[(entity, row["id"])]
            if outcome == "stored":
                assert (got["outcome"], got["message"]) == ("inserted", None), (entity, row["id"], got["message"])
                assert stored[entity][row["id"]] == {**detail, "data_source": ds}, (entity, row["id"])
            else:
                assert (got["outcome"], got["message"]) == (outcome, detail), (entity, row["id"])
                assert row["id"] not in stored[entity], (entity, row["id"])
    # (text other than country, state and currency is stored exactly as it is: no Unicode normalisation)
    assert stored["customers"]["c_combining"]["name"] == COMBINING
    assert stored["customers"]["c_long_name"]["name"] == TEN_KB and len(TEN_KB) == 10240
    # and GrowPanel holds the valid rows and nothing else.
    stored_ids = {e: {i for i in objs if not i.startswith("w")} for e, objs in stored.items()}
    wanted = {e: {r["id"] for r, (o, _) in rows if o == "stored"} for e, rows in expected.items()}
    assert stored_ids == wanted

    # The customer with 20,000 invoices: every invoice stored as sent, in date order,
    whale_audit = [r for k, r in audit.items() if k[0] == "invoices" and k[1].startswith("w")]
    assert len(whale_audit) == WHALE_INVOICES
    assert {r["outcome"] for r in whale_audit} == {"inserted"}
    whale_stored = {i: obj for i, obj in stored["invoices"].items() if i.startswith("w")}
    assert whale_stored == {r["id"]: whale_sent(r, ds) for r in whale}
    assert sandbox.violations() == []
    # posted as a chain of 20 full batches, each sent only after the one before it was answered.
    chain = stack.sql(
        """
        SELECT b.id, b.rows, b.depends_on, d.finished_at AS dep_done,
               (SELECT min(started_at) FROM batch_attempts WHERE batch_id = b.id) AS posted
        FROM batches b LEFT JOIN batches d ON d.id = b.depends_on
        WHERE b.run_id = :r AND b.stage = 'invoices' AND b.rows = 1000
        ORDER BY b.seq
        """,
        r=run_id,
    )
    assert len(chain) == WHALE_INVOICES // 1000
    assert chain[0]["depends_on"] is None
    assert [c["depends_on"] for c in chain[1:]] == [c["id"] for c in chain[:-1]]
    assert all(c["posted"] >= c["dep_done"] for c in chain[1:])

    # The counts add up, stage by stage.
    for entity, rows in expected.items():
        s = doc["stages"][entity]
        # A duplicated id is one audit row; a row without an id is one row of its own.
        audited = len({r["id"] for r, _ in rows if r["id"] is not None}) + sum(1 for r, _ in rows if r["id"] is None)
        audited += WHALE_INVOICES if entity == "invoices" else 0
        assert s["rows"] == audited
        assert (s["pending"], s["rows"]) == (0, s["accepted"] + s["error"] + s["invalid"] + s["skipped"])


def test_nul_bytes_from_json_and_bytea_columns_are_rejected_per_row(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a source whose `text` cannot hold NUL, but whose `json` and `bytea` columns do
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(source_schema)))
        create_table(conn, source_schema, "plans", {"id": "text", "name": "json", "billing_freq": "text", "currency": "text"})
        create_table(conn, source_schema, "customers", {
            "id": "text", "name": "json", "email": "bytea", "created_date": "timestamptz", "country": "text", "custom_variables": "json",
        })
        create_table(conn, source_schema, "invoices", INVOICE_TYPES)
        for table, columns, rows in (
            ("plans", ["id", "name", "billing_freq", "currency"], [
                ("p_ok", '"Pro"', "month", "usd"),
                ("p_nul", '"Pro\\u0000"', "month", "usd"),
            ]),
            ("customers", ["id", "name", "email", "created_date", "country", "custom_variables"], [
                ("c_ok", '"Zo\\u00eb"', None, "2024-01-01T00:00:00Z", "us", '{"plan": "\\\\u0000 is only text here"}'),
                ("c_name_nul", '"Ac\\u0000me"', None, "2024-01-01T00:00:00Z", "us", None),
                ("c_email_bytes", None, b"ops\x00@x.test", "2024-01-01T00:00:00Z", "us", None),
                ("c_cv_nul", '"X"', None, "2024-01-01T00:00:00Z", "us", '{"k": "v\\u0000"}'),
                ("c_cv_key_nul", '"X"', None, "2024-01-01T00:00:00Z", "us", '{"k\\u0000": 1}'),
                ("c_cv_surrogate", '"X"', None, "2024-01-01T00:00:00Z", "us", '{"k": "\\ud800"}'),
                ("c_cv_huge_number", '"X"', None, "2024-01-01T00:00:00Z", "us", '{"n": 1e400}'),
                ("c_name_number", "42", None, "2024-01-01T00:00:00Z", "us", None),
            ]),
        ):
            with conn.cursor() as cur, cur.copy(
                sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
                    sql.Identifier(source_schema), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
                )
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        invoices = [
            {"id": f"i_{c}", "customer_id": c, "type": "one-time", "date": datetime(2024, 2, 1, tzinfo=timezone.utc),
             "amount_cents": Decimal(100), "currency": "usd", "start_date": date(2024, 2, 1), "end_date": "2024-02-01"}
            for c in ("c_ok", "c_name_nul", "c_email_bytes")
        ]
        insert_rows(conn, source_schema, "invoices", invoices, list(INVOICE_TYPES))
    # When it is imported
    result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema), "--wait", "--json")
    # Then the run completes; each NUL gives its row a clear outcome, and the rows around them are stored
    assert result.code == 1, result.stderr
    doc = result.json()
    assert doc["state"] == "completed_with_errors"
    assert {b["state"] for b in stack.sql("SELECT state FROM batches WHERE run_id = :r", r=doc["run_id"])} == {"done"}
    audit = {k: (r["outcome"], r["message"]) for k, r in stack.audit(doc["run_id"]).items()}
    surrogate = audit.pop(("customers", "c_cv_surrogate"))
    huge = audit.pop(("customers", "c_cv_huge_number"))
    assert audit == {
        ("plans", "p_ok"): ("inserted", None),
        ("plans", "p_nul"): ("invalid", "name must not contain a NUL character (\\u0000), got 'Pro\\x00'"),
        ("customers", "c_ok"): ("inserted", None),
        ("customers", "c_name_nul"): ("invalid", "name must not contain a NUL character (\\u0000), got 'Ac\\x00me'"),
        ("customers", "c_email_bytes"): ("invalid", "email must be text, got bytes b'ops\\x00@x.test'"),
        ("customers", "c_cv_nul"): ("invalid", "custom_variables must not contain a NUL character (\\u0000), found in the string 'v\\x00'"),
        ("customers", "c_cv_key_nul"): ("invalid", "custom_variables must not contain a NUL character (\\u0000), found in the key 'k\\x00'"),
        ("customers", "c_name_number"): ("invalid", "name must be text, got 42"),
        ("invoices", "i_c_ok"): ("inserted", None),
        ("invoices", "i_c_name_nul"): (
            "skipped",
            "customer c_name_nul was rejected in this run (invalid: name must not contain a NUL character (\\u0000), got 'Ac\\x00me')",
        ),
        ("invoices", "i_c_email_bytes"): (
            "skipped", "customer c_email_bytes was rejected in this run (invalid: email must be text, got bytes b'ops\\x00@x.test')",
        ),
    }
    # (the JSON reader's own reason is kept in the message)
    assert surrogate[0] == "invalid" and surrogate[1].startswith("custom_variables is JSON that cannot be read (no low surrogate")
    assert huge[0] == "invalid" and huge[1].startswith("custom_variables is JSON that cannot be read (number is infinity")
    stored = _ledger(sandbox)
    assert stored["customers"] == {
        "c_ok": {"id": "c_ok", "name": "Zo\u00eb", "created_date": "2024-01-01T00:00:00Z", "country": "us",
                 "custom_variables": {"plan": "\\u0000 is only text here"}, "data_source": sandbox.data_source},
    }
    assert list(stored["plans"]) == ["p_ok"] and list(stored["invoices"]) == ["i_c_ok"]
    # Nothing stored in the state database holds a NUL, and the messages read back intact through the CLI.
    errors = stack.cli("errors", str(doc["run_id"]), "--json")
    assert errors.code == 0, errors.stderr
    assert {(e["entity"], e["id"]): e["message"] for e in errors.json()}[("customers", "c_name_nul")] == (
        "name must not contain a NUL character (\\u0000), got 'Ac\\x00me'"
    )
