"""The three POST endpoints: body shapes, auth, batch limits, upsert statuses and row order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sandbox_helpers import Api, customer, invoice, plan

PATHS = ("/data/plans", "/data/customers", "/data/invoices")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "body",
    [b"not json", b"{", b"42", b'"a string"', b"null", b'[{"id": "x"}, "a string"]', b"[1, 2]", b"[[]]", b""],
)
def test_malformed_bodies_are_400(api: Api, path: str, body: bytes) -> None:
    response = api.post(path, body)
    assert response.status_code == 400
    assert set(response.json()) == {"error"} and response.json()["error"]
    assert api.ledger() == {"plans": [], "customers": [], "invoices": []}


@pytest.mark.parametrize("path", PATHS)
def test_empty_array_is_an_empty_result(api: Api, path: str) -> None:
    response = api.post(path, [])
    assert response.status_code == 200
    assert response.json() == {"result": []}


def test_single_object_and_array_both_work(api: Api) -> None:
    assert api.rows("/data/plans", plan()) == [{"id": "plan_pro", "export_status": "inserted"}]
    assert api.rows("/data/plans", [plan(id="plan_a"), plan(id="plan_b")]) == [
        {"id": "plan_a", "export_status": "inserted"},
        {"id": "plan_b", "export_status": "inserted"},
    ]


def test_content_type_is_not_required(api: Api) -> None:
    # The guide's curl examples post with -d, i.e. as application/x-www-form-urlencoded.
    response = api.post("/data/plans", plan(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"


def test_ids_are_echoed_as_sent(api: Api) -> None:
    result = api.rows("/data/plans", [plan(id=7), {"name": "no id"}, plan(id="ok")])
    assert [r["id"] for r in result] == [7, None, "ok"]
    assert [r["export_status"] for r in result] == ["error", "error", "inserted"]
    assert "export_error" not in result[2]


def test_more_rows_than_max_batch_is_413_and_applies_nothing(make_api: Callable[..., Api]) -> None:
    api = make_api(max_batch=5)
    rows = [plan(id=f"plan_{i}") for i in range(6)]
    response = api.post("/data/plans", rows)
    assert response.status_code == 413
    assert "5" in response.json()["error"]
    assert api.ledger()["plans"] == []
    assert len(api.rows("/data/plans", rows[:5])) == 5


def test_default_max_batch_is_1000(api: Api) -> None:
    assert api.post("/data/plans", [plan(id=f"p{i}") for i in range(1001)]).status_code == 413
    assert api.post("/data/plans", [plan(id=f"p{i}") for i in range(1000)]).status_code == 200


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({}, None),
        ({"Authorization": "key_1"}, None),
        ({"Authorization": "Basic a2V5XzE6"}, None),
        ({"Authorization": "Bearer "}, None),
        ({"Authorization": "Bearer nope"}, None),
    ],
)
@pytest.mark.parametrize("path", PATHS)
def test_bad_auth_is_401_before_anything_else(
    api: Api, path: str, headers: dict[str, str], key: str | None
) -> None:
    # Even a malformed body and a batch over the limit: auth comes first.
    response = api.post(path, b"not json", headers=headers, key=key)
    assert response.status_code == 401
    assert set(response.json()) == {"error"}


def test_auth_scheme_is_case_insensitive(api: Api) -> None:
    assert (
        api.post("/data/plans", plan(), headers={"Authorization": "bearer key_1"}, key=None).status_code
        == 200
    )


def test_data_source_required_on_each_row(api: Api) -> None:
    result = api.rows("/data/plans", [plan(id="a", data_source=None), plan(id="b")])
    assert result[0]["export_error"] == "data_source is required"
    assert result[1]["export_status"] == "inserted"


def test_key_is_tied_to_its_data_source(api: Api) -> None:
    assert api.rows("/data/plans", plan(data_source="ds_2"), key="key_2")[0]["export_status"] == "inserted"
    assert api.rows("/data/plans", plan(data_source="ds_2"), key="key_1")[0]["export_status"] == "error"
    # Two keys of one data source see the same objects.
    assert api.rows("/data/plans", plan(), key="key_1")[0]["export_status"] == "inserted"
    assert api.rows("/data/plans", plan(), key="key_1b")[0]["export_status"] == "unchanged"


def test_upsert_statuses(api: Api) -> None:
    assert api.rows("/data/plans", plan())[0]["export_status"] == "inserted"
    assert api.rows("/data/plans", plan())[0]["export_status"] == "unchanged"
    assert api.rows("/data/plans", plan(name="Pro 2"))[0]["export_status"] == "updated"
    assert api.rows("/data/plans", plan(name="Pro 2"))[0]["export_status"] == "unchanged"
    assert api.ledger()["plans"] == [plan(name="Pro 2")]


def test_nulls_and_absent_optional_fields_are_the_same_content(api: Api) -> None:
    assert api.rows("/data/customers", customer(state=None))[0]["export_status"] == "inserted"
    without = customer()
    del without["state"]
    assert api.rows("/data/customers", without)[0]["export_status"] == "unchanged"


def test_custom_variables_compare_exactly(api: Api) -> None:
    assert (
        api.rows("/data/customers", customer(custom_variables={"seats": 1}))[0]["export_status"] == "inserted"
    )
    assert (
        api.rows("/data/customers", customer(custom_variables={"seats": 1.0}))[0]["export_status"]
        == "updated"
    )
    assert (
        api.rows("/data/customers", customer(custom_variables={"seats": True}))[0]["export_status"]
        == "updated"
    )
    assert (
        api.rows("/data/customers", customer(custom_variables={"seats": True}))[0]["export_status"]
        == "unchanged"
    )


def test_same_id_twice_in_a_batch_is_applied_in_order(api: Api) -> None:
    result = api.rows("/data/plans", [plan(), plan(name="Pro 2"), plan(name="Pro 2")])
    assert [r["export_status"] for r in result] == ["inserted", "updated", "unchanged"]


def test_a_row_error_does_not_store_nor_affect_others(api: Api) -> None:
    result = api.rows("/data/plans", [plan(id="a"), plan(id="b", currency="USD"), plan(id="c")])
    assert [r["export_status"] for r in result] == ["inserted", "error", "inserted"]
    assert [p["id"] for p in api.ledger()["plans"]] == ["a", "c"]
    # The errored id was not stored: sending it correctly inserts it.
    assert api.rows("/data/plans", plan(id="b"))[0]["export_status"] == "inserted"


def test_objects_are_keyed_per_kind(api: Api) -> None:
    assert api.rows("/data/plans", plan(id="same"))[0]["export_status"] == "inserted"
    assert api.rows("/data/customers", customer(id="same"))[0]["export_status"] == "inserted"


def test_mixed_batch_of_1000_rows(api: Api) -> None:
    api.rows("/data/plans", plan())
    api.rows("/data/customers", customer())
    rows: list[dict[str, Any]] = []
    for i in range(1000):
        row = invoice(id=f"inv_{i:04d}", date=f"2024-02-01T00:00:{i % 60:02d}Z")
        if i % 3 == 1:
            row["amount_cents"] = -i
        elif i % 3 == 2 and i % 2 == 0:
            row["customer_id"] = f"ghost_{i}"
        rows.append(row)
    result = api.rows("/data/invoices", rows)
    assert len(result) == 1000
    assert [r["id"] for r in result] == [r["id"] for r in rows]
    expected_ok = []
    for i, entry in enumerate(result):
        if i % 3 == 1:
            assert entry["export_status"] == "error"
            assert entry["export_error"] == f"amount_cents must be a non-negative integer, got {-i}"
        elif i % 3 == 2 and i % 2 == 0:
            assert entry == {
                "id": f"inv_{i:04d}",
                "export_status": "error",
                "export_error": f"Customer ID ghost_{i} does not exist",
            }
        else:
            assert entry == {"id": f"inv_{i:04d}", "export_status": "inserted"}
            expected_ok.append(f"inv_{i:04d}")
    stored = {inv["id"]: inv for inv in api.ledger()["invoices"]}
    assert sorted(stored) == expected_ok
    assert stored["inv_0000"] == rows[0]


def test_unknown_routes_and_methods_are_json_errors(api: Api) -> None:
    response = api.get("/data/nothing")
    assert response.status_code == 404 and "error" in response.json()
    response = api.request("DELETE", "/data/plans")
    assert response.status_code == 405 and "error" in response.json()
