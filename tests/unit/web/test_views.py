"""Views: the query string is validated by a model built from the view's declared parameters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from starlette.testclient import TestClient

from crmsync.store import tokens

from .conftest import MakeRuntime, OpenClient, orders_config

CONFIG = orders_config(
    fields="      - {source: amount, target: Amount__c, transform: number}\n",
    more="""\
views:
  contracts:
    connection: salesforce
    query: "SELECT Id FROM Contract WHERE AccountId = :account_id AND StartDate > :since LIMIT :limit"
    params:
      account_id: {type: id, required: true}
      since: {type: date, default: "2020-01-01"}
      limit: {type: int}
""",
)

ACCOUNT = "001000000000001AAA"


class _Target:
    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def query_view(self, soql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.asked.append(dict(params))
        return [{"attributes": {"type": "Contract"}, "Id": "800000000000001AAA"}]


@pytest.fixture
def api(
    monkeypatch: pytest.MonkeyPatch, make_runtime: MakeRuntime, open_client: OpenClient
) -> tuple[TestClient, _Target]:
    runtime = make_runtime(CONFIG)
    target = _Target()
    monkeypatch.setattr(runtime, "queryable", lambda name: target)
    return open_client(runtime, bearer=tokens.create_token(runtime.store, "app")), target


def test_parameters_are_typed_defaulted_and_rows_cleaned(api: tuple[TestClient, _Target]) -> None:
    client, target = api
    r = client.get("/api/v1/views/contracts", params={"account_id": ACCOUNT, "limit": "5"})
    assert r.status_code == 200, r.text
    assert r.json() == {"view": "contracts", "totalSize": 1, "records": [{"Id": "800000000000001AAA"}]}
    assert target.asked == [{"account_id": ACCOUNT, "since": "2020-01-01", "limit": 5}]
    client.get("/api/v1/views/contracts", params={"account_id": ACCOUNT, "since": "2024-05-01"})
    assert target.asked[-1]["since"] == dt.date(2024, 5, 1)


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        (
            {"account_id": ACCOUNT, "colour": "red"},
            "unknown_parameter",
            "unknown parameters ['colour']; this view takes ['account_id', 'limit', 'since']",
        ),
        ({}, "missing_parameter", "parameter 'account_id' is required"),
        (
            {"account_id": "nope"},
            "invalid_parameter",
            "parameter 'account_id' must be of type id: a Salesforce id has 15 or 18 letters and digits",
        ),
        (
            {"account_id": ACCOUNT, "limit": "x"},
            "invalid_parameter",
            "parameter 'limit' must be of type int: invalid literal for int() with base 10: 'x'",
        ),
        (
            {"account_id": ACCOUNT, "limit": "9" * 5000},
            "invalid_parameter",
            "parameter 'limit' must be of type int:",
        ),
        (
            {"account_id": ACCOUNT, "since": "May"},
            "invalid_parameter",
            "parameter 'since' must be of type date:",
        ),
    ],
)
def test_bad_parameters_are_422_naming_the_first_problem(
    api: tuple[TestClient, _Target], query: dict[str, str], code: str, message: str
) -> None:
    client, target = api
    r = client.get("/api/v1/views/contracts", params=query)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"].startswith(message)
    assert target.asked == []


def test_an_unknown_view_is_404_with_the_valid_names(api: tuple[TestClient, _Target]) -> None:
    r = api[0].get("/api/v1/views/nope")
    assert r.status_code == 404 and "valid: contracts" in r.json()["error"]["message"]


class _Failing(_Target):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def query_view(self, soql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused")), 503, "store_unavailable"),
        (RuntimeError("secret detail of a bug"), 500, "internal_error"),
    ],
)
def test_a_store_away_is_503_and_an_unforeseen_error_500_without_its_detail(
    monkeypatch: pytest.MonkeyPatch,
    make_runtime: MakeRuntime,
    open_client: OpenClient,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    status: int,
    code: str,
) -> None:
    runtime = make_runtime(CONFIG)
    monkeypatch.setattr(runtime, "queryable", lambda name: _Failing(error))
    client = open_client(runtime, bearer=tokens.create_token(runtime.store, "app"))
    r = client.get("/api/v1/views/contracts", params={"account_id": ACCOUNT})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert "secret detail" not in r.text and "connection refused" not in r.text
    if status == 500:  # the traceback is in the server's log, not the reply
        assert any(rec.exc_info and rec.exc_info[1] is error for rec in caplog.records)
