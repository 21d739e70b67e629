"""The ingest API refuses bad input with a 4xx naming the problem, stores nothing, never 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from crmsync.config import load_config
from crmsync.engine.runtime import Runtime
from crmsync.store import schema, tokens
from crmsync.web.app import create_app

CONFIG = """
version: 1
store: {url: "sqlite:///%(db)s"}
web: {max_body_bytes: 20000, max_batch: 50}
connections:
  salesforce:
    type: salesforce
    auth: client_credentials
    login_url: https://127.0.0.1:9
    instance_url: https://127.0.0.1:9
    client_id: abc
    client_secret: topsecret-value
  shop:
    type: app
flows:
  orders:
    source: shop
    target: salesforce
    object: Order__c
    key: order_id
    match: {field: Order_Id__c}
    fields:
      - {source: order_id, target: Order_Id__c}
      - {source: amount, target: Amount__c, transform: number}
      - {source: note, target: Note__c}
      - {source: status, target: Status__c, owner: target}
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime, str]]:
    path = tmp_path / "crmsync.yaml"
    path.write_text(CONFIG % {"db": tmp_path / "c.db"})
    runtime = Runtime(load_config(path))
    token = tokens.create_token(runtime.store, "shop")
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, runtime, token
    runtime.close()


def stored(runtime: Runtime) -> int:
    with runtime.store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(schema.changes)).scalar_one())


def post(client: TestClient, body: Any, **kw: Any) -> Any:
    return client.post("/api/v1/flows/orders/records", content=json.dumps(body), **kw)


def test_accepts_one_record_a_batch_and_a_list(api: tuple[TestClient, Runtime, str]) -> None:
    client, runtime, _ = api
    r = post(client, {"key": "o1", "fields": {"amount": 3, "note": "x"}})
    assert r.status_code == 202 and r.json() == {"accepted": 1, "duplicates": 0}
    r = post(client, {"records": [{"key": "o2"}, {"key": "o3", "operation": "delete"}]})
    assert r.status_code == 202 and r.json()["accepted"] == 2
    r = post(client, [{"key": 4, "fields": {"amount": 1.5}}])
    assert r.status_code == 202
    assert stored(runtime) == 4


def test_a_delivery_id_seen_before_is_a_duplicate(api: tuple[TestClient, Runtime, str]) -> None:
    client, runtime, _ = api
    body = {"key": "o1", "fields": {"amount": 3}, "delivery_id": "d-1"}
    assert post(client, body).json() == {"accepted": 1, "duplicates": 0}
    assert post(client, body).json() == {"accepted": 0, "duplicates": 1}
    assert stored(runtime) == 1


@pytest.mark.parametrize(
    ("body", "status", "code", "names"),
    [
        (b"{not json", 400, "invalid_json", "not valid JSON"),
        (b"", 400, "invalid_json", "empty body"),
        ({"key": "o1", "fields": {"amount": {"nested": 1}}}, 422, "invalid_record", "fields.amount"),
        ({"key": ["o1"]}, 422, "invalid_record", "key"),
        ({"key": "o1", "operation": "merge"}, 422, "invalid_record", "operation"),
        ({"key": "o1", "extra": 1}, 422, "invalid_record", "extra"),
        ({"fields": {}}, 422, "invalid_record", "key"),
        ({"key": "o1", "fields": {"colour": "red"}}, 422, "field_not_writable", "unknown field 'colour'"),
        ({"key": "o1", "fields": {"status": "paid"}}, 422, "field_not_writable", "owned by 'salesforce'"),
        ({"key": "o1", "fields": {"order_id": "o2"}}, 422, "field_not_writable", "differs"),
        ({"records": []}, 422, "invalid_record", "no records"),
        ({"records": [{"key": str(i)} for i in range(51)]}, 413, "batch_too_large", "at most 50"),
        ("just a string", 422, "invalid_record", "JSON object"),
    ],
)
def test_bad_input_is_refused_naming_the_problem(
    api: tuple[TestClient, Runtime, str], body: Any, status: int, code: str, names: str
) -> None:
    client, runtime, _ = api
    content = body if isinstance(body, bytes) else json.dumps(body)
    r = client.post("/api/v1/flows/orders/records", content=content)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert names in json.dumps(error)
    assert stored(runtime) == 0


def test_oversized_body_is_413(api: tuple[TestClient, Runtime, str]) -> None:
    client, runtime, _ = api
    r = post(client, {"key": "o1", "fields": {"note": "x" * 30000}})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert stored(runtime) == 0


def test_unknown_flow_is_404_with_the_valid_names(api: tuple[TestClient, Runtime, str]) -> None:
    client, _runtime, _ = api
    r = client.post("/api/v1/flows/nope/records", content=b'{"key": "a"}')
    assert r.status_code == 404 and "valid: orders" in r.json()["error"]["message"]


def test_missing_wrong_and_revoked_tokens_are_401(api: tuple[TestClient, Runtime, str]) -> None:
    client, runtime, _token = api
    body = json.dumps({"key": "o1"})
    no_auth = client.post("/api/v1/flows/orders/records", content=body, headers={"Authorization": ""})
    assert no_auth.status_code == 401 and no_auth.headers["www-authenticate"] == "Bearer"
    wrong = client.post(
        "/api/v1/flows/orders/records", content=body, headers={"Authorization": "Bearer cs_nope"}
    )
    assert wrong.status_code == 401
    assert tokens.revoke_token(runtime.store, "shop")
    revoked = client.post("/api/v1/flows/orders/records", content=body)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
    assert stored(runtime) == 0


def test_tokens_are_stored_hashed(api: tuple[TestClient, Runtime, str]) -> None:
    _, runtime, token = api
    with runtime.store.read() as conn:
        rows = [tuple(r) for r in conn.execute(sa.select(schema.api_tokens))]
    assert rows and token not in repr(rows)


def test_health_ready_and_metrics(api: tuple[TestClient, Runtime, str]) -> None:
    client, _, _ = api
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    post(client, {"key": "o1"})
    text = client.get("/metrics").text
    assert 'crmsync_changes_received_total{flow="orders"} 1.0' in text
    assert 'crmsync_queue_depth{state="pending"} 1.0' in text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
records = st.fixed_dictionaries(
    {},
    optional={
        "key": st.one_of(st.text(max_size=300), st.integers(), json_values),
        "operation": st.sampled_from(["upsert", "delete", "merge", 1]),
        "fields": st.dictionaries(
            st.sampled_from(["amount", "note", "status", "x", ""]), json_values, max_size=3
        ),
        "delivery_id": st.one_of(st.text(max_size=5), st.integers()),
        "other": json_values,
    },
)
bodies = st.one_of(
    records,
    st.lists(records, max_size=5),
    st.fixed_dictionaries({"records": st.lists(records, max_size=5)}),
    json_values,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_fuzz_never_5xx_and_stores_only_what_it_accepts(
    api: tuple[TestClient, Runtime, str], body: Any, raw: bytes | None
) -> None:
    client, runtime, _ = api
    before = stored(runtime)
    content = raw if raw is not None else json.dumps(body)
    r = client.post("/api/v1/flows/orders/records", content=content)
    assert r.status_code < 500, r.text
    after = stored(runtime)
    if r.status_code == 202:
        assert after - before == r.json()["accepted"]
    else:
        assert 400 <= r.status_code < 500 and "error" in r.json()
        assert after == before
