"""Conformance: every endpoint the sandbox serves, called through the official SDK (growpanel 0.1.29).

Each call goes through `growpanel._generated.api.<tag>.<operation>.sync_detailed` over real HTTP
to the sandbox subprocess; `response.parsed` must be the SDK's model for the status code, with
its required fields present (from_dict raises KeyError otherwise) and the right values.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from growpanel._generated.api.data_customers import get_data_customers, post_data_customers
from growpanel._generated.api.data_data_sources import (
    get_data_data_sources_id_progress,
    post_data_data_sources_id_reset,
)
from growpanel._generated.api.data_invoices import get_data_invoices, post_data_invoices
from growpanel._generated.api.data_plans import get_data_plans, post_data_plans
from growpanel._generated.api.reports_mrr import get_reports_mrr
from growpanel._generated.client import AuthenticatedClient
from growpanel._generated.models.get_data_customers_response_200 import GetDataCustomersResponse200
from growpanel._generated.models.get_data_customers_response_400 import GetDataCustomersResponse400
from growpanel._generated.models.get_data_data_sources_id_progress_response_200 import (
    GetDataDataSourcesIdProgressResponse200,
)
from growpanel._generated.models.get_data_data_sources_id_progress_response_403 import (
    GetDataDataSourcesIdProgressResponse403,
)
from growpanel._generated.models.get_data_invoices_response_200 import GetDataInvoicesResponse200
from growpanel._generated.models.get_data_plans_response_200 import GetDataPlansResponse200
from growpanel._generated.models.get_data_plans_response_200_result_list_item import (
    GetDataPlansResponse200ResultListItem,
)
from growpanel._generated.models.get_data_plans_response_401 import GetDataPlansResponse401
from growpanel._generated.models.get_data_plans_response_429 import GetDataPlansResponse429
from growpanel._generated.models.get_data_plans_response_500 import GetDataPlansResponse500
from growpanel._generated.models.get_reports_mrr_response_200 import GetReportsMrrResponse200
from growpanel._generated.models.get_reports_mrr_response_200_result_item import (
    GetReportsMrrResponse200ResultItem,
)
from growpanel._generated.models.get_reports_mrr_response_401 import GetReportsMrrResponse401
from growpanel._generated.models.post_data_customers_body_type_1_item import PostDataCustomersBodyType1Item
from growpanel._generated.models.post_data_customers_response_200 import PostDataCustomersResponse200
from growpanel._generated.models.post_data_data_sources_id_reset_response_200 import (
    PostDataDataSourcesIdResetResponse200,
)
from growpanel._generated.models.post_data_data_sources_id_reset_response_401 import (
    PostDataDataSourcesIdResetResponse401,
)
from growpanel._generated.models.post_data_invoices_body_type_1_item import PostDataInvoicesBodyType1Item
from growpanel._generated.models.post_data_invoices_response_200 import PostDataInvoicesResponse200
from growpanel._generated.models.post_data_invoices_response_401 import PostDataInvoicesResponse401
from growpanel._generated.models.post_data_plans_body_type_1_item import PostDataPlansBodyType1Item
from growpanel._generated.models.post_data_plans_response_200 import PostDataPlansResponse200
from growpanel._generated.types import UNSET
from sandbox_helpers import customer, plan

from sandbox.testing import SandboxProcess

PLANS = [plan(id="plan_basic", external_id="plan_basic"), plan(id="plan_pro", external_id="plan_pro")]
CUSTOMERS = [customer(id=f"cust_{n}") for n in range(3)]
# cust_0 and cust_1 pay 1000/month on plan_basic from January; cust_1 stops after February.
INVOICE_ROWS: list[dict[str, Any]] = [
    {"id": f"inv_{c}_{m}", "customer_id": f"cust_{c}", "plan_id": "plan_basic", "type": "subscription",
     "date": f"2024-{m:02d}-01", "start_date": f"2024-{m:02d}-01", "end_date": f"2024-{m + 1:02d}-01",
     "amount": 1000, "currency": "usd", "data_source": "ds_1"}
    for c, months in ((0, (1, 2, 3)), (1, (1, 2)))
    for m in months
]  # fmt: skip


def _invoice_bodies() -> list[PostDataInvoicesBodyType1Item]:
    """The invoices as the SDK's body model: its required fields, the rest as extra properties."""
    return [PostDataInvoicesBodyType1Item.from_dict(row) for row in INVOICE_ROWS]


@pytest.fixture
def client(live: httpx.Client, live_process: SandboxProcess) -> Iterator[AuthenticatedClient]:
    """An SDK client with key_1 (ds_1) on the freshly reset live sandbox."""
    with AuthenticatedClient(base_url=live_process.url, token="key_1") as sdk:
        yield sdk


@pytest.fixture
def loaded(client: AuthenticatedClient) -> AuthenticatedClient:
    """Plans, customers and invoices posted through the SDK, each answer checked."""
    plans = post_data_plans.sync_detailed(
        client=client, body=[PostDataPlansBodyType1Item.from_dict(p) for p in PLANS]
    )
    assert isinstance(plans.parsed, PostDataPlansResponse200), plans.content
    assert [(r["id"], r["export_status"]) for r in plans.parsed.result] == [
        ("plan_basic", "inserted"), ("plan_pro", "inserted"),
    ]  # fmt: skip
    customers = post_data_customers.sync_detailed(
        client=client, body=[PostDataCustomersBodyType1Item.from_dict(c) for c in CUSTOMERS]
    )
    assert isinstance(customers.parsed, PostDataCustomersResponse200), customers.content
    assert all(r["export_status"] == "inserted" for r in customers.parsed.result)
    invoices = post_data_invoices.sync_detailed(client=client, body=_invoice_bodies())
    assert isinstance(invoices.parsed, PostDataInvoicesResponse200), invoices.content
    assert [r["export_status"] for r in invoices.parsed.result] == ["inserted"] * len(INVOICE_ROWS)
    return client


def test_listings_parse_into_the_sdk_models_with_every_row(loaded: AuthenticatedClient) -> None:
    plans = get_data_plans.sync_detailed(client=loaded, source="ds_1", limit="10000")
    assert isinstance(plans.parsed, GetDataPlansResponse200), plans.content
    assert plans.parsed.result.count == len(PLANS)
    items = plans.parsed.result.list_
    assert all(isinstance(item, GetDataPlansResponse200ResultListItem) for item in items)
    assert [(i.external_id, i.data_source, i.name, i.currency, i.billing_freq) for i in items] == [
        ("plan_basic", "ds_1", "Pro", "usd", "month"), ("plan_pro", "ds_1", "Pro", "usd", "month"),
    ]  # fmt: skip
    customers = get_data_customers.sync_detailed(client=loaded, source="ds_1", limit="2")
    assert isinstance(customers.parsed, GetDataCustomersResponse200), customers.content
    assert customers.parsed.result.count == len(CUSTOMERS) and len(customers.parsed.result.list_) == 2
    invoices = get_data_invoices.sync_detailed(client=loaded, source="ds_1", limit="10000")
    assert isinstance(invoices.parsed, GetDataInvoicesResponse200), invoices.content
    assert invoices.parsed.result.count == len(INVOICE_ROWS)
    assert sorted(i["id"] for i in invoices.parsed.result.list_) == sorted(r["id"] for r in INVOICE_ROWS)


def test_progress_parses_into_the_sdk_model_with_the_posted_counts(
    loaded: AuthenticatedClient, live: httpx.Client
) -> None:
    bad = post_data_plans.sync_detailed(
        client=loaded, body=[PostDataPlansBodyType1Item.from_dict(plan(id="p_bad", external_id="p_bad", currency="USD"))]
    )
    assert isinstance(bad.parsed, PostDataPlansResponse200)
    assert bad.parsed.result[0]["export_status"] == "error"
    progress = get_data_data_sources_id_progress.sync_detailed("ds_1", client=loaded)
    parsed = progress.parsed
    assert isinstance(parsed, GetDataDataSourcesIdProgressResponse200), progress.content
    rows = len(PLANS) + len(CUSTOMERS) + len(INVOICE_ROWS)
    assert (parsed.enqueued_count, parsed.processed_count, parsed.failed_count) == (rows + 1, rows, 1)
    assert parsed.phase in ("processing", "done")
    assert isinstance(parsed.started_at, str) and isinstance(parsed.last_activity_at, str)
    assert datetime.fromisoformat(parsed.started_at) <= datetime.fromisoformat(parsed.last_activity_at)
    assert parsed.additional_properties == {}
    # The legacy wire is what the SDK cannot read: its counters come back unset.
    assert live.post("/_sandbox/faults", json={"wire": "legacy"}).status_code == 200
    legacy = get_data_data_sources_id_progress.sync_detailed("ds_1", client=loaded).parsed
    assert isinstance(legacy, GetDataDataSourcesIdProgressResponse200)
    assert legacy.enqueued_count is UNSET and legacy.additional_properties["enqueued_count"] == rows + 1


def test_progress_of_another_data_source_is_the_sdk_403(client: AuthenticatedClient) -> None:
    response = get_data_data_sources_id_progress.sync_detailed("ds_2", client=client)
    assert response.status_code == 403
    assert isinstance(response.parsed, GetDataDataSourcesIdProgressResponse403)
    assert "ds_2" in response.parsed.error


def test_reset_parses_into_the_sdk_model_and_empties_the_source(loaded: AuthenticatedClient) -> None:
    response = post_data_data_sources_id_reset.sync_detailed("ds_1", client=loaded)
    assert isinstance(response.parsed, PostDataDataSourcesIdResetResponse200), response.content
    assert response.parsed.success is True
    after = get_data_plans.sync_detailed(client=loaded, source="ds_1", limit="10000").parsed
    assert isinstance(after, GetDataPlansResponse200) and after.result.count == 0


def test_mrr_report_parses_into_the_sdk_model(loaded: AuthenticatedClient) -> None:
    response = get_reports_mrr.sync_detailed(
        client=loaded, date="20240101-20240430", interval="month", base_currency="usd", currency="usd"
    )
    parsed = response.parsed
    assert isinstance(parsed, GetReportsMrrResponse200), response.content
    assert parsed.currency == "usd" and parsed.breakdown is UNSET
    assert all(isinstance(p, GetReportsMrrResponse200ResultItem) for p in parsed.result)
    rows = [(p.date, p.end_date, p.new, p.churn, p.mrr_diff, p.total_mrr, p.total_arr, p.total_customers)
            for p in parsed.result]  # fmt: skip
    assert rows == [
        ("2024-01-01", "2024-01-31", 2000, 0, 2000, 2000, 24000, 2),
        ("2024-02-01", "2024-02-29", 0, 0, 0, 2000, 24000, 2),
        ("2024-03-01", "2024-03-31", 0, -1000, -1000, 1000, 12000, 1),
        ("2024-04-01", "2024-04-30", 0, -1000, -1000, 0, 0, 0),
    ]
    assert [p.churn_customers for p in parsed.result] == [0, 0, 1, 1]
    # The SDK's parameter names reach the sandbox: interval, breakdown, baseCurrency, customer.
    quarter = get_reports_mrr.sync_detailed(
        client=loaded, date="20240101-20240331", interval="quarter", breakdown="data_source",
        base_currency="eur", customer="cust_0",
    ).parsed  # fmt: skip
    assert isinstance(quarter, GetReportsMrrResponse200)
    assert (quarter.currency, quarter.breakdown, len(quarter.result)) == ("eur", "data_source", 1)
    # usd 10.00 / 1.10 = eur 9.09 for cust_0 alone.
    assert quarter.result[0].total_mrr == 909 and quarter.result[0]["data_source"] == "ds_1"


def test_errors_parse_into_the_sdk_error_models(client: AuthenticatedClient, live: httpx.Client) -> None:
    with AuthenticatedClient(base_url=str(live.base_url), token="wrong-key") as stranger:
        plans = get_data_plans.sync_detailed(client=stranger, source="ds_1")
        assert isinstance(plans.parsed, GetDataPlansResponse401) and plans.parsed.error == "Unknown API key"
        posted = post_data_invoices.sync_detailed(client=stranger, body=_invoice_bodies())
        assert isinstance(posted.parsed, PostDataInvoicesResponse401)
        reset = post_data_data_sources_id_reset.sync_detailed("ds_1", client=stranger)
        assert isinstance(reset.parsed, PostDataDataSourcesIdResetResponse401)
        report = get_reports_mrr.sync_detailed(client=stranger)
        assert isinstance(report.parsed, GetReportsMrrResponse401)
    bad_limit = get_data_customers.sync_detailed(client=client, source="ds_1", limit="lots")
    assert isinstance(bad_limit.parsed, GetDataCustomersResponse400) and "limit" in bad_limit.parsed.error
    assert live.post("/_sandbox/faults", json={"throttle_rate": 1, "throttle_retry_after": 3}).status_code == 200
    throttled = get_data_plans.sync_detailed(client=client, source="ds_1")
    assert isinstance(throttled.parsed, GetDataPlansResponse429) and throttled.headers["Retry-After"] == "3"
    live.delete("/_sandbox/faults")
    assert live.post("/_sandbox/faults", json={"error_rate": 1, "error_statuses": [500]}).status_code == 200
    failed = get_data_plans.sync_detailed(client=client, source="ds_1")
    assert isinstance(failed.parsed, GetDataPlansResponse500) and failed.parsed.error
