"""A realistic sample billing database: years of history, every invoice type, a few bad rows.

Two layouts of the same data: `growpanel` (tables plans/customers/invoices whose columns are named
after GrowPanel's fields, for the default mapping) and `billing` (a billing system's own names, for a
mapping file; see `examples/billing-mapping.toml`). Rows are generated in Python from a seed, so the
same arguments give the same data, and written with COPY.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import psycopg
from psycopg import sql

PLANS = [
    # id, name, billing_freq, count, monthly amount in cents (the plan's invoice amount is derived)
    ("starter_m", "Starter Monthly", "month", 1, 2900),
    ("pro_m", "Pro Monthly", "month", 1, 9900),
    ("team_m", "Team Monthly", "month", 1, 29900),
    ("pro_q", "Pro Quarterly", "month", 3, 8900),
    ("pro_y", "Pro Annual", "year", 1, 7900),
    ("enterprise_y", "Enterprise Annual", "year", 1, 99900),
    ("metered_w", "Metered Weekly", "week", 1, 1500),
]
COUNTRIES = ["us", "us", "us", "gb", "de", "dk", "fr", "ca", "au", "nl", "se", "jp", "br", "in", "es"]
US_STATES = ["ca", "ny", "tx", "wa", "ma", "il"]


@dataclass(frozen=True)
class SeedShape:
    """How much data and of what shape."""

    customers: int = 300
    years: int = 4
    whales: int = 2
    whale_invoices: int = 1200
    bad_rows: bool = True
    seed: int = 7
    currency: str = "usd"


def _month_add(moment: datetime, months: int) -> datetime:
    month = moment.month - 1 + months
    year = moment.year + month // 12
    month = month % 12 + 1
    day = min(moment.day, 28)
    return moment.replace(year=year, month=month, day=day)


def _period_end(start: datetime, freq: str, count: int) -> datetime:
    if freq == "month":
        return _month_add(start, count)
    if freq == "year":
        return _month_add(start, 12 * count)
    if freq == "week":
        return start + timedelta(weeks=count)
    return start + timedelta(days=count)


def _plan_amount(freq: str, count: int, monthly: int) -> int:
    if freq == "month":
        return monthly * count
    if freq == "year":
        return monthly * 12 * count
    if freq == "week":
        return monthly * count
    return monthly


def generate(shape: SeedShape, now: datetime | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Iterator[dict[str, Any]]]:
    """Plans, customers, and a stream of invoices (one customer after another)."""
    rng = random.Random(shape.seed)
    now = now or datetime(2026, 11, 1, tzinfo=timezone.utc)
    history_start = _month_add(now, -12 * shape.years)
    plans = [
        {"id": pid, "name": name, "billing_freq": freq, "billing_freq_count": count, "currency": shape.currency}
        for pid, name, freq, count, _ in PLANS
    ]
    plan_by_id = {p[0]: p for p in PLANS}
    customers = []
    for n in range(1, shape.customers + 1):
        created = history_start + timedelta(days=rng.randrange(0, 365 * shape.years - 30), seconds=rng.randrange(86400))
        country = rng.choice(COUNTRIES)
        customers.append(
            {
                "id": f"cus_{n:06d}",
                "name": f"Customer {n} {rng.choice(['Inc', 'GmbH', 'ApS', 'Ltd', 'LLC'])}",
                "email": f"billing{n}@example{n % 37}.com",
                "created_date": created,
                "country": country.upper() if n % 11 == 0 else country,
                "state": rng.choice(US_STATES) if country == "us" and n % 3 == 0 else None,
                "trial_started": created - timedelta(days=14) if n % 4 == 0 else None,
                "custom_variables": {"segment": rng.choice(["smb", "mid", "enterprise"]), "source": rng.choice(["ads", "organic"])},
            }
        )
    if shape.bad_rows:
        customers.append({"id": "cus_bad_noname", "name": None, "email": None, "created_date": history_start, "country": "us", "state": None, "trial_started": None, "custom_variables": None})
        customers.append({"id": "cus_bad_country", "name": "Nowhere Ltd", "email": "x@nowhere.test", "created_date": history_start, "country": "xx", "state": None, "trial_started": None, "custom_variables": None})

    def invoices() -> Iterator[dict[str, Any]]:
        counter = 0
        whales = set(range(1, shape.whales + 1))
        for n, customer in enumerate(customers, start=1):
            if customer["id"].startswith("cus_bad"):
                continue
            created = customer["created_date"]
            if n in whales:
                plan = plan_by_id["metered_w"]
                start = _month_add(now, -(shape.whale_invoices // 4) - 1)
                for k in range(shape.whale_invoices):
                    counter += 1
                    day = start + timedelta(days=k // 4, hours=(k % 4) * 6)
                    yield _invoice(f"inv_{counter:08d}", customer["id"], plan, "subscription", day, _period_end(day, "day", 1), 1500 + (k % 7) * 100)
                continue
            plan = plan_by_id[rng.choice(["starter_m", "pro_m", "pro_m", "team_m", "pro_q", "pro_y"])]
            start = created + timedelta(days=rng.choice([0, 0, 14]))
            churned = False
            while start < now:
                freq, count = plan[2], plan[3]
                end = _period_end(start, freq, count)
                counter += 1
                if churned:
                    churned = False
                yield _invoice(f"inv_{counter:08d}", customer["id"], plan, "subscription", start, end, _plan_amount(freq, count, plan[4]))
                roll = rng.random()
                if roll < 0.03:
                    counter += 1
                    yield _invoice(f"inv_{counter:08d}", customer["id"], None, "one-time", start + timedelta(days=2), start + timedelta(days=2), rng.choice([5000, 15000, 49900]))
                if roll > 0.985:
                    counter += 1
                    refund_day = start + timedelta(days=5)
                    yield _invoice(f"inv_{counter:08d}", customer["id"], None, "refund", refund_day, refund_day, _plan_amount(freq, count, plan[4]) // 2)
                if 0.05 < roll < 0.08 and freq == "month":
                    plan = plan_by_id["team_m" if plan[0] != "team_m" else "pro_m"]  # upgrade or downgrade
                if 0.9 < roll < 0.93:
                    counter += 1
                    yield _invoice(f"inv_{counter:08d}", customer["id"], None, "cancellation", end, end, 0)
                    if rng.random() < 0.5:
                        return_after = rng.choice([30, 60, 120])
                        start = end + timedelta(days=return_after)
                        churned = True
                        continue
                    break
                start = end
        if shape.bad_rows:
            yield _invoice("inv_bad_negative", "cus_000001", plan_by_id["pro_m"], "subscription", history_start, _month_add(history_start, 1), -500)
            yield _invoice("inv_bad_noplan", "cus_000003", None, "subscription", history_start, _month_add(history_start, 1), 9900)
            yield _invoice("inv_dup", "cus_000004", plan_by_id["pro_m"], "subscription", history_start, _month_add(history_start, 1), 9900)
            yield _invoice("inv_dup", "cus_000004", plan_by_id["pro_m"], "subscription", history_start, _month_add(history_start, 1), 9900)
            yield _invoice("inv_of_bad_customer", "cus_bad_country", plan_by_id["pro_m"], "subscription", history_start, _month_add(history_start, 1), 9900)

    return plans, customers, invoices()


def _invoice(iid: str, cid: str, plan: Any, kind: str, start: datetime, end: datetime, amount: int) -> dict[str, Any]:
    currency = "usd"
    return {
        "id": iid,
        "customer_id": cid,
        "plan_id": plan[0] if plan is not None else None,
        "type": kind,
        "date": start,
        "amount_cents": amount,
        "currency": currency,
        "start_date": start,
        "end_date": end,
        "payment_date": start + timedelta(hours=1) if kind == "subscription" else None,
        "quantity": 1 if kind == "subscription" else None,
        "proration": False if kind == "subscription" else None,
        "discount": None,
    }


_GROWPANEL_DDL = """
CREATE TABLE {schema}.plans (id text, name text, billing_freq text, billing_freq_count int, currency text);
CREATE TABLE {schema}.customers (id text, name text, email text, created_date timestamptz, country text,
    state text, trial_started timestamptz, custom_variables jsonb);
CREATE TABLE {schema}.invoices (id text, customer_id text, plan_id text, type text, date timestamptz,
    amount_cents bigint, currency text, start_date timestamptz, end_date timestamptz, payment_date timestamptz,
    quantity int, proration boolean, discount bigint);
"""

_BILLING_DDL = """
CREATE TABLE {schema}.price_plans (code text PRIMARY KEY, title text, period text, period_count int, cur text);
CREATE TABLE {schema}.accounts (account_no text PRIMARY KEY, company text, billing_email text,
    signed_up_at timestamp, country_code char(2), region text, trial_from date, metadata jsonb);
CREATE TABLE {schema}.charges (charge_id text, account_no text, price_code text, kind text,
    issued_at timestamp, total_minor numeric(14, 0), cur text, period_from timestamp, period_to timestamp,
    paid_at timestamp, seats int, prorated boolean, discount_minor int);
"""

_COLUMNS = {
    "growpanel": {
        "plans": ("plans", ["id", "name", "billing_freq", "billing_freq_count", "currency"]),
        "customers": ("customers", ["id", "name", "email", "created_date", "country", "state", "trial_started", "custom_variables"]),
        "invoices": (
            "invoices",
            ["id", "customer_id", "plan_id", "type", "date", "amount_cents", "currency", "start_date", "end_date", "payment_date", "quantity", "proration", "discount"],
        ),
    },
    "billing": {
        "plans": ("price_plans", ["code", "title", "period", "period_count", "cur"]),
        "customers": ("accounts", ["account_no", "company", "billing_email", "signed_up_at", "country_code", "region", "trial_from", "metadata"]),
        "invoices": (
            "charges",
            ["charge_id", "account_no", "price_code", "kind", "issued_at", "total_minor", "cur", "period_from", "period_to", "paid_at", "seats", "prorated", "discount_minor"],
        ),
    },
}
_FIELDS = {
    "plans": ["id", "name", "billing_freq", "billing_freq_count", "currency"],
    "customers": ["id", "name", "email", "created_date", "country", "state", "trial_started", "custom_variables"],
    "invoices": ["id", "customer_id", "plan_id", "type", "date", "amount_cents", "currency", "start_date", "end_date", "payment_date", "quantity", "proration", "discount"],
}


def _cell(value: Any, layout: str, field: str) -> Any:
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    if layout == "billing" and isinstance(value, datetime):
        naive = value.astimezone(timezone.utc).replace(tzinfo=None)
        return naive.date() if field == "trial_started" else naive
    if layout == "billing" and field == "currency" and isinstance(value, str):
        return value.upper()
    return value


def seed(conninfo: str, schema: str, shape: SeedShape, layout: str = "growpanel") -> dict[str, int]:
    """(Re)create `schema` with the sample data; returns row counts per entity."""
    plans, customers, invoices = generate(shape)
    counts = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {s} CASCADE").format(s=sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {s}").format(s=sql.Identifier(schema)))
        ddl = _GROWPANEL_DDL if layout == "growpanel" else _BILLING_DDL
        for statement in ddl.format(schema=sql.Identifier(schema).as_string(conn)).split(";"):
            if statement.strip():
                conn.execute(statement)
        for entity, rows in (("plans", plans), ("customers", customers), ("invoices", invoices)):
            table, columns = _COLUMNS[layout][entity]
            fields = _FIELDS[entity]
            copy_sql = sql.SQL("COPY {s}.{t} ({c}) FROM STDIN").format(
                s=sql.Identifier(schema), t=sql.Identifier(table), c=sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            n = 0
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row([_cell(row[f], layout, f) for f in fields])
                    n += 1
            counts[entity] = n
        conn.execute(sql.SQL("ANALYZE"))
    return counts
