"""The ingest API refuses bad input with a 4xx naming the problem, stores nothing, never 5xx."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from crmsync.engine.runtime import Runtime
from crmsync.store import schema, tokens
from crmsync.web.errors import MAX_DETAILS, ApiError
from crmsync.web.ingest import Ingestor

from .conftest import MakeRuntime, OpenClient, orders_config

CONFIG = orders_config(
    web="web: {max_body_bytes: 20000, max_batch: 50}\n",
    flow="    match: {field: Order_Id__c}\n",
    fields="""\
      - {source: amount, target: Amount__c, transform: number}
      - {source: note, target: Note__c}
      - {source: status, target: Status__c, owner: target}
""",
)


@pytest.fixture
def api(make_runtime: MakeRuntime, open_client: OpenClient) -> tuple[TestClient, Runtime, str]:
    runtime = make_runtime(CONFIG)
    token = tokens.create_token(runtime.store, "shop")
    return open_client(runtime, bearer=token), runtime, token


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


# ---------------------------------------------------------------- values are bounded at the door


def test_a_number_too_large_for_any_field_is_refused_naming_it_and_nothing_is_queued(
    api: tuple[TestClient, Runtime, str],
) -> None:
    client, runtime, _ = api
    body = {
        "records": [{"key": "ok-1", "fields": {"amount": 1}}, {"key": "bad", "fields": {"amount": "1e5000"}}]
    }
    r = post(client, body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_value"
    assert error["details"] == [
        {
            "loc": "records.1.fields.amount",
            "message": "field 'amount': '1e5000' has more than 38 digits before the decimal point",
        }
    ]
    assert stored(runtime) == 0


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"amount": "1e1000000"}, "fields.amount"),
        ({"amount": "NaN"}, "fields.amount"),
        ({"amount": "9" * 5000}, "fields.amount"),
        ({"note": "x" * 200_000}, "fields.note"),
    ],
)
def test_values_no_target_can_hold_are_refused_quickly(
    api: tuple[TestClient, Runtime, str], fields: dict[str, Any], loc: str
) -> None:
    client, runtime, _ = api
    runtime.max_body_bytes = 1_000_000
    started = time.monotonic()
    r = post(client, {"key": "o1", "fields": fields})
    assert time.monotonic() - started < 1.0
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == f"records.0.{loc}"
    assert stored(runtime) == 0


class _Described:
    """A target that describes Order__c as Salesforce does."""

    kind = "salesforce"

    def describe(self, object_name: str) -> dict[str, Any]:
        assert object_name == "Order__c"
        return {
            "fields": [
                {"name": "Order_Id__c", "type": "string", "length": 10},
                {"name": "Amount__c", "type": "currency", "precision": 6, "scale": 2},
                {"name": "Note__c", "type": "textarea", "length": 5},
            ]
        }

    def close(self) -> None:
        pass


def test_the_target_fields_described_limits_are_checked_once_known(
    api: tuple[TestClient, Runtime, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, runtime, token = api
    monkeypatch.setattr(runtime, "connector", lambda name: _Described())
    ingestor = Ingestor(runtime)
    try:
        assert ingestor.limits.wait("salesforce", "Order__c", timeout=10)
        fine = json.dumps({"key": "o1", "fields": {"amount": "9999.995", "note": "12345"}}).encode()
        with pytest.raises(ApiError) as caught:
            ingestor.handle(token, "orders", fine)  # 9999.995 rounds to 10000.00: 5 whole digits
        assert caught.value.details == [
            {
                "loc": "records.0.fields.amount",
                "message": "field 'amount' → Amount__c: 9999.995 does not fit: at most 4 digit(s) before "
                "the decimal point (precision 6, scale 2)",
            }
        ]
        body = [
            {"key": "o1", "fields": {"amount": 9999.99, "note": "12345"}},
            {"key": "o2" * 6, "fields": {"note": "123456"}},
            {"key": "o3" * 6, "operation": "delete"},
        ]
        with pytest.raises(ApiError) as caught:
            ingestor.handle(token, "orders", json.dumps(body).encode())
        assert caught.value.status == 422
        assert [d["loc"] for d in caught.value.details] == ["records.1.key", "records.1.fields.note"]
        assert "holds at most 10" in caught.value.details[0]["message"]
        assert ingestor.handle(token, "orders", json.dumps(body[0]).encode()) == {
            "accepted": 1,
            "duplicates": 0,
        }
    finally:
        ingestor.close()


def test_sixty_thousand_unknown_fields_get_a_short_reply(api: tuple[TestClient, Runtime, str]) -> None:
    client, runtime, _ = api
    runtime.max_body_bytes = 2_000_000
    fields = {f"f{i}": 1 for i in range(60_000)}
    r = post(client, {"key": "o1", "fields": fields})
    assert r.status_code == 422
    error = r.json()["error"]
    assert len(r.content) < 10_000
    assert len(error["details"]) == MAX_DETAILS and error["omitted"] == 60_000 - MAX_DETAILS
    assert error["details"][0] == {
        "loc": "records.0.fields",
        "message": "unknown field 'f0' for flow 'orders'; valid: amount, note, order_id",
    }
    assert "first 20 of 60,000 problems" in error["message"]


def test_many_shape_errors_are_capped_too(api: tuple[TestClient, Runtime, str]) -> None:
    client, _, _ = api
    r = post(client, {"key": "o1", "fields": {f"f{i}": [i] for i in range(100)}})
    assert r.status_code == 422 and len(r.json()["error"]["details"]) == MAX_DETAILS
    assert r.json()["error"]["omitted"] > 0


@pytest.mark.parametrize("declared", ["20001", "9" * 5000])
def test_a_declared_oversized_body_is_413_before_it_is_read(
    api: tuple[TestClient, Runtime, str], declared: str
) -> None:
    client, _runtime, _ = api
    r = client.post("/api/v1/flows/orders/records", content=b"{}", headers={"Content-Length": declared})
    assert r.status_code == 413, r.text
    assert "web.max_body_bytes" in r.json()["error"]["message"]


def test_checks_and_transforms_run_in_a_worker_thread_not_on_the_event_loop(
    api: tuple[TestClient, Runtime, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, _ = api
    seen: list[bool] = []
    original = Ingestor.value_problems

    def spy(self: Ingestor, flow: Any, records: Any) -> Any:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        return original(self, flow, records)

    monkeypatch.setattr(Ingestor, "value_problems", spy)
    assert post(client, {"key": "o1", "fields": {"amount": 2}}).status_code == 202
    assert seen == [False]


odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=40),
    st.sampled_from(
        ["1e5000", "-1e1000000", "NaN", "Infinity", "1,234.5", "0e999999999", "9" * 39, "x" * 5000]
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=odd_values, note=odd_values)
def test_any_value_is_answered_quickly_and_what_is_accepted_maps_without_error(
    api: tuple[TestClient, Runtime, str], amount: Any, note: Any
) -> None:
    client, runtime, _ = api
    started = time.monotonic()
    r = post(client, {"key": "p1", "fields": {"amount": amount, "note": note}})
    assert time.monotonic() - started < 1.0
    assert r.status_code in (202, 422), r.text
    if r.status_code == 422:
        assert r.json()["error"]["code"] == "invalid_value"
        assert all(d["loc"].startswith("records.0.fields.") for d in r.json()["error"]["details"])
    else:  # the worker maps what ingest accepted through the same transforms: it cannot fail there
        runtime.flows["orders"].to_target("p1", {"amount": amount, "note": note})
