"""A fast billing source for benchmarks: millions of rows made by Postgres itself (generate_series).

`demo.seed` builds rows in Python and COPYs them, which is right for a demo and slow for
1,000,000 invoices; here the same shapes come from a few `INSERT ... SELECT` statements, so a million
invoices take seconds. Shapes: a few whales with thousands of invoices each (weekly metered billing),
and many small customers whose invoice counts fall off from a few hundred to a handful (a long tail),
each customer's invoices dated in order. Every row is valid unless `bad_every` asks for rejects.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

# id, name, billing_freq, billing_freq_count, invoice amount in cents
PLANS = (
    ("starter_m", "Starter Monthly", "month", 1, 2900),
    ("pro_m", "Pro Monthly", "month", 1, 9900),
    ("team_m", "Team Monthly", "month", 1, 29900),
    ("pro_q", "Pro Quarterly", "month", 3, 26700),
    ("pro_y", "Pro Annual", "year", 1, 94800),
    ("enterprise_y", "Enterprise Annual", "year", 1, 1198800),
    ("metered_w", "Metered Weekly", "week", 1, 1500),
)
# The plans small customers subscribe to (index = customer number mod 6); whales are metered weekly.
SMALL_PLANS = PLANS[:6]
# How steeply invoice counts fall off along the small customers (1 = every customer alike).
SKEW = 1.5

_DDL = """
CREATE TABLE {s}.plans (id text, name text, billing_freq text, billing_freq_count int, currency text);
CREATE TABLE {s}.customers (id text, name text, email text, created_date timestamptz, country text,
    state text, trial_started timestamptz, custom_variables jsonb);
CREATE TABLE {s}.invoices (id text, customer_id text, plan_id text, type text, date timestamptz,
    amount_cents bigint, currency text, start_date timestamptz, end_date timestamptz,
    payment_date timestamptz, quantity int, proration boolean, discount bigint)
"""

# The creation date of customer number `n`, used by both tables so invoices follow their customer.
_CREATED = "(timestamptz '2016-01-01 00:00:00+00' + make_interval(days => ({n}::bigint * 7919 %% 2500)::int, secs => ({n}::bigint * 104729 %% 86400)::int))"

_CUSTOMERS = """
INSERT INTO {s}.customers
SELECT 'cus_' || lpad(n::text, 8, '0'),
       'Customer ' || n || ' ' || (ARRAY['Inc', 'GmbH', 'ApS', 'Ltd', 'LLC'])[1 + n %% 5],
       'billing' || n || '@example' || (n %% 37) || '.com',
       {created},
       CASE WHEN n %% NULLIF({bad}, 0) = 0 THEN 'xx'
            ELSE (ARRAY['us', 'us', 'us', 'gb', 'de', 'dk', 'fr', 'ca', 'au', 'nl', 'se', 'jp', 'br', 'in', 'es'])[1 + (n * 31) %% 15] END,
       CASE WHEN (n * 31) %% 15 < 3 AND n %% 3 = 0 THEN (ARRAY['ca', 'ny', 'tx', 'wa', 'ma', 'il'])[1 + n %% 6] END,
       CASE WHEN n %% 4 = 0 THEN {created} - interval '14 days' END,
       jsonb_build_object('segment', (ARRAY['smb', 'mid', 'enterprise'])[1 + n %% 3],
                          'source', CASE WHEN n %% 2 = 0 THEN 'ads' ELSE 'organic' END)
FROM generate_series(1, %(customers)s) AS n
"""

# g numbers the invoices; the first whales * whale_invoices belong to the whales, the rest spread over
# the small customers with a density that falls off along the customer number.
_INVOICES = """
INSERT INTO {s}.invoices
SELECT 'inv_' || lpad(g::text, 9, '0'),
       'cus_' || lpad(cn::text, 8, '0'),
       CASE WHEN kind IN ('subscription', 'cancellation') THEN plan END,
       kind, day,
       CASE WHEN kind = 'cancellation' THEN 0 WHEN kind = 'one-time' THEN 15000
            WHEN kind = 'refund' THEN amount / 2 ELSE amount END,
       'usd', day, CASE WHEN kind = 'subscription' THEN day + period ELSE day END,
       CASE WHEN kind = 'subscription' THEN day + interval '1 hour' END,
       CASE WHEN kind = 'subscription' THEN 1 + cn %% 3 END,
       CASE WHEN kind = 'subscription' THEN false END,
       NULL
FROM (
    SELECT g, cn, plan, amount, period,
           {created_cn} + CASE WHEN cn <= %(whales)s THEN period WHEN cnt > 100 THEN interval '1 week' WHEN cnt > 24 THEN interval '1 month'
                               ELSE period END * (k - 1) AS day,
           CASE WHEN k = cnt AND cn %% 10 = 0 AND cnt > 1 THEN 'cancellation'
                WHEN k > 1 AND g %% 31 = 7 THEN 'one-time'
                WHEN k > 1 AND g %% 97 = 11 THEN 'refund'
                ELSE 'subscription' END AS kind
    FROM (
        SELECT g, cn,
               row_number() OVER (PARTITION BY cn ORDER BY g) AS k,
               count(*) OVER (PARTITION BY cn) AS cnt,
               CASE WHEN cn <= %(whales)s THEN 'metered_w' ELSE (%(plan_ids)s::text[])[1 + cn %% 6] END AS plan,
               CASE WHEN cn <= %(whales)s THEN 1500 ELSE (%(plan_amounts)s::bigint[])[1 + cn %% 6] END AS amount,
               CASE WHEN cn <= %(whales)s THEN interval '6 hours'
                    ELSE (%(plan_periods)s::interval[])[1 + cn %% 6] END AS period
        FROM (
            SELECT g, CASE WHEN g < %(whale_rows)s THEN g / %(whale_invoices)s + 1
                           ELSE %(whales)s + 1 + floor(%(small_customers)s
                                * power((g - %(whale_rows)s)::float8 / %(small_rows)s, {skew}))::int END AS cn
            FROM generate_series(0, %(invoices)s - 1) AS g
        ) AS numbered
    ) AS ranked
) AS shaped
"""


@dataclass(frozen=True)
class SourceShape:
    """How many rows, and of what shape."""

    customers: int
    invoices: int
    whales: int = 3
    whale_invoices: int = 4000
    # Every n-th customer has an invalid country (so its invoices are skipped); 0 for none.
    bad_every: int = 0

    def effective(self) -> SourceShape:
        """The shape with whales that fit the source (they never take more than half the invoices)."""
        whales = max(0, min(self.whales, self.customers // 2))
        per_whale = min(self.whale_invoices, self.invoices // (2 * whales)) if whales else 0
        return SourceShape(self.customers, self.invoices, whales if per_whale else 0, per_whale, self.bad_every)


def _period(freq: str, count: int) -> str:
    return f"{count} {freq}"


def seed_source(url: str, schema: str, shape: SourceShape) -> dict[str, int]:
    """(Re)create `schema` with plans, customers and invoices of this shape; returns row counts."""
    shape = shape.effective()
    if shape.customers <= shape.whales:
        raise ValueError("a source needs more customers than whales")
    s = sql.Identifier(schema)
    created = _CREATED.format(n="n")
    created_cn = _CREATED.format(n="cn")
    whale_rows = shape.whales * shape.whale_invoices
    params = {
        "customers": shape.customers,
        "invoices": shape.invoices,
        "whales": shape.whales,
        "whale_invoices": max(1, shape.whale_invoices),
        "whale_rows": whale_rows,
        "small_rows": max(1, shape.invoices - whale_rows),
        "small_customers": shape.customers - shape.whales,
        "plan_ids": [p[0] for p in SMALL_PLANS],
        "plan_amounts": [p[4] for p in SMALL_PLANS],
        "plan_periods": [_period(p[2], p[3]) for p in SMALL_PLANS],
    }
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        for statement in _DDL.split(";"):
            conn.execute(sql.SQL(statement).format(s=s))  # type: ignore[arg-type]
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {}.plans FROM STDIN").format(s)) as copy:
            for pid, name, freq, count, _ in PLANS:
                copy.write_row((pid, name, freq, count, "usd"))
        conn.execute(
            sql.SQL(_CUSTOMERS.replace("{created}", created)).format(s=s, bad=sql.Literal(shape.bad_every)),  # type: ignore[arg-type]
            params,
        )
        conn.execute(
            sql.SQL(_INVOICES.replace("{created_cn}", created_cn)).format(s=s, skew=sql.Literal(SKEW)),  # type: ignore[arg-type]
            params,
        )
        conn.execute(sql.SQL("ANALYZE {}.plans, {}.customers, {}.invoices").format(s, s, s))
    return {"plans": len(PLANS), "customers": shape.customers, "invoices": shape.invoices}


def mapping_text(schema: str) -> str:
    """A mapping file reading the three tables of `schema`."""
    return "".join(f'[{entity}]\nquery = "SELECT * FROM {schema}.{entity}"\n\n' for entity in ("plans", "customers", "invoices"))
