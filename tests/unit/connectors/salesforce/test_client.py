"""The HTTP client: headers, budget tracking, paging, URL encoding, collections chunking, re-login races."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.connectors.base import ApiUsage
from crmsync.connectors.salesforce.client import SalesforceClient, plan_chunks, subrequest_error
from crmsync.connectors.salesforce.settings import SalesforceSettings
from crmsync.errors import ConfigError, FixTheData, RetryLater

BASE = "/services/data/v66.0"


def test_limit_info_is_tracked_on_every_response(
    client: Any, fake: Any, settings: SalesforceSettings
) -> None:
    usages = iter(
        ["api-usage=18/15000", "api-usage=13499/15000", "api-usage=13500/15000; per-app-api-usage=1/250"]
    )
    fake.route("GET", r"/limits$", lambda _r: fake.reply(200, {}, usage=next(usages)))
    assert client.api_usage() is None
    assert client.over_guard() is False

    client.limits()
    assert client.api_usage() == ApiUsage(18, 15000)
    client.limits()
    assert client.over_guard() is False  # 0.8999 < 0.9
    client.limits()
    assert client.api_usage() == ApiUsage(13500, 15000)
    assert client.over_guard() is True
    assert client.calls_made == 3  # the token request is not an API call


def test_query_follows_next_records_url(client: Any, fake: Any) -> None:
    pages = {
        f"{BASE}/query": {
            "totalSize": 3,
            "done": False,
            "nextRecordsUrl": f"{BASE}/query/01gXX-2",
            "records": [{"attributes": {"type": "Lead"}, "Id": "1"}, {"Id": "2"}],
        },
        f"{BASE}/query/01gXX-2": {"totalSize": 3, "done": True, "records": [{"Id": "3"}]},
    }
    fake.route("GET", r"/query", lambda r: fake.reply(200, pages[r.url.path]))

    rows = client.query("SELECT Id FROM Lead")

    assert [r["Id"] for r in rows] == ["1", "2", "3"]
    first, second = fake.data_requests()
    assert first.url.params["q"] == "SELECT Id FROM Lead"
    assert second.url.path == f"{BASE}/query/01gXX-2"
    assert "q" not in second.url.params


def test_query_all_includes_deleted_rows(client: Any, fake: Any) -> None:
    fake.route(
        "GET", r"/queryAll$", fake.reply(200, {"done": True, "records": [{"Id": "1", "IsDeleted": True}]})
    )
    assert client.query("SELECT Id FROM Lead", include_deleted=True) == [{"Id": "1", "IsDeleted": True}]


def test_query_iter_is_lazy(client: Any, fake: Any) -> None:
    fake.route(
        "GET",
        r"/query",
        lambda r: fake.reply(
            200, {"done": False, "nextRecordsUrl": f"{BASE}/query/x-2", "records": [{"Id": "1"}]}
        ),
    )
    rows = client.query_iter("SELECT Id FROM Lead")
    assert next(rows) == {"Id": "1"}
    assert len(fake.data_requests()) == 1


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("plain-1", "plain-1"),
        ("with space", "with%20space"),  # never '+' (simple-salesforce #801)
        ("a+b", "a%2Bb"),
        ("x#1?y=2&z", "x%231%3Fy%3D2%26z"),
        ("50%", "50%25"),
        ("Zürich", "Z%C3%BCrich"),
        (12345, "12345"),
    ],
)
def test_upsert_encodes_the_external_id_as_one_path_segment(
    client: Any, fake: Any, value: Any, segment: str
) -> None:
    fake.route(
        "PATCH",
        r"/sobjects/Usage__c/Key__c/",
        fake.reply(201, {"id": "a0X1", "success": True, "errors": [], "created": True}),
    )
    assert client.upsert("Usage__c", "Key__c", value, {"Key__c": value, "Qty__c": 2}) == ("a0X1", True)
    request = fake.data_requests()[0]
    assert request.url.raw_path.decode() == f"{BASE}/sobjects/Usage__c/Key__c/{segment}"
    assert fake.body_of(request) == {"Qty__c": 2}


def test_upsert_reports_an_update(client: Any, fake: Any) -> None:
    fake.route(
        "PATCH",
        r"/sobjects/",
        fake.reply(200, {"id": "a0X1", "success": True, "errors": [], "created": False}),
    )
    assert client.upsert("Usage__c", "Key__c", "k", {}) == ("a0X1", False)


def test_upsert_of_a_value_with_a_slash_goes_in_the_body(client: Any, fake: Any) -> None:
    fake.route(
        "PATCH",
        r"/composite/sobjects/Usage__c/Key__c$",
        fake.reply(200, [{"id": "a0X2", "success": True, "errors": [], "created": True}]),
    )
    assert client.upsert("Usage__c", "Key__c", "2024/05/A", {"Qty__c": 1}) == ("a0X2", True)
    body = fake.body_of(fake.data_requests()[0])
    assert body == {
        "allOrNone": False,
        "records": [{"attributes": {"type": "Usage__c"}, "Qty__c": 1, "Key__c": "2024/05/A"}],
    }


def test_upsert_on_an_old_api_version_reads_the_id_back(client: Any, fake: Any) -> None:
    fake.route("PATCH", r"/sobjects/", fake.reply(204))
    fake.route("GET", r"/sobjects/Usage__c/Key__c/k1$", fake.reply(200, {"Id": "a0X9"}))
    assert client.upsert("Usage__c", "Key__c", "k1", {}) == ("a0X9", False)


def test_create_get_update(client: Any, fake: Any) -> None:
    fake.route("POST", r"/sobjects/Lead$", fake.reply(201, {"id": "00Q1", "success": True, "errors": []}))
    fake.route("GET", r"/sobjects/Lead/00Q1$", fake.reply(200, {"Id": "00Q1", "Company": "Acme"}))
    fake.route("PATCH", r"/sobjects/Lead/00Q1$", fake.reply(204))

    assert (
        client.create("Lead", {"LastName": "Ng", "Company": "Acme", "When__c": dt.date(2024, 6, 30)})
        == "00Q1"
    )
    assert client.get("Lead", "00Q1", ["Id", "Company"]) == {"Id": "00Q1", "Company": "Acme"}
    client.update(
        "Lead",
        "00Q1",
        {"Amount__c": Decimal("12.5"), "At__c": dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.UTC)},
    )

    create, get, update = fake.data_requests()
    assert create.headers["Content-Type"] == "application/json"
    assert fake.body_of(create) == {"LastName": "Ng", "Company": "Acme", "When__c": "2024-06-30"}
    assert get.url.params["fields"] == "Id,Company"
    assert fake.body_of(update) == {"Amount__c": 12.5, "At__c": "2024-05-01T10:30:00.000+0000"}


def test_naive_datetimes_are_not_sent(client: Any, fake: Any) -> None:
    with pytest.raises(TypeError, match="naive"):
        client.update("Lead", "00Q1", {"At__c": dt.datetime(2024, 5, 1)})
    assert fake.requests == []


def test_describe_is_cached(client: Any, fake: Any) -> None:
    fake.route("GET", r"/sobjects/Lead/describe$", fake.reply(200, {"name": "Lead", "fields": []}))
    assert client.describe("Lead")["name"] == "Lead"
    assert client.describe("Lead")["name"] == "Lead"
    assert len(fake.data_requests()) == 1


def test_composite(client: Any, fake: Any) -> None:
    fake.route(
        "POST",
        r"/composite$",
        fake.reply(
            200,
            {
                "compositeResponse": [
                    {"body": {"id": "001A"}, "httpStatusCode": 201, "referenceId": "acct"},
                    {
                        "body": [{"errorCode": "REQUIRED_FIELD_MISSING", "message": "missing LastName"}],
                        "httpStatusCode": 400,
                        "referenceId": "contact",
                    },
                ]
            },
        ),
    )
    subs = client.composite(
        [
            {"method": "POST", "url": "sobjects/Account", "referenceId": "acct", "body": {"Name": "A"}},
            {
                "method": "POST",
                "url": f"{BASE}/sobjects/Contact",
                "referenceId": "contact",
                "body": {"AccountId": "@{acct.id}"},
            },
        ],
        all_or_none=True,
    )
    sent = fake.body_of(fake.data_requests()[0])
    assert sent["allOrNone"] is True
    assert [s["url"] for s in sent["compositeRequest"]] == [
        f"{BASE}/sobjects/Account",
        f"{BASE}/sobjects/Contact",
    ]
    assert subrequest_error(subs[0]) is None
    err = subrequest_error(subs[1], object_name="Contact")
    assert isinstance(err, FixTheData) and err.vendor_code == "REQUIRED_FIELD_MISSING"
    with pytest.raises(ValueError, match="25"):
        client.composite(
            [{"method": "GET", "url": "limits", "referenceId": f"r{i}"} for i in range(26)], all_or_none=False
        )


def _save_all(request: httpx.Request) -> httpx.Response:
    import json

    records = json.loads(request.content)["records"]
    return httpx.Response(
        200, json=[{"id": f"id-{r.get('Name', '')}", "success": True, "errors": []} for r in records]
    )


def test_collections_create_sends_200_a_call_in_order(client: Any, fake: Any) -> None:
    fake.route("POST", r"/composite/sobjects$", _save_all)
    results = client.collections_create("Account", [{"Name": str(i)} for i in range(1000)])
    assert [r["id"] for r in results] == [f"id-{i}" for i in range(1000)]
    calls = fake.data_requests()
    assert len(calls) == 5
    assert all(
        len(fake.body_of(c)["records"]) == 200 and fake.body_of(c)["allOrNone"] is False for c in calls
    )
    assert fake.body_of(calls[0])["records"][0] == {"attributes": {"type": "Account"}, "Name": "0"}


def test_collections_upsert_never_sends_one_external_id_twice_in_a_call(client: Any, fake: Any) -> None:
    fake.route("PATCH", r"/composite/sobjects/Account/Ext__c$", _save_all)
    records = [{"Ext__c": "A", "Name": "1"}, {"Ext__c": "B", "Name": "2"}, {"Ext__c": "A", "Name": "3"}]
    results = client.collections_upsert("Account", "Ext__c", records)
    assert [r["id"] for r in results] == ["id-1", "id-2", "id-3"]
    batches = [[r["Name"] for r in fake.body_of(c)["records"]] for c in fake.data_requests()]
    assert batches == [["1", "2"], ["3"]]


def test_collections_delete_and_retrieve(client: Any, fake: Any) -> None:
    fake.route(
        "DELETE",
        r"/composite/sobjects$",
        lambda r: fake.reply(
            200, [{"id": i, "success": True, "errors": []} for i in r.url.params["ids"].split(",")]
        ),
    )
    fake.route("POST", r"/composite/sobjects/Lead$", fake.reply(200, [{"Id": "00Q1"}, None]))

    assert [r["id"] for r in client.collections_delete(["a", "b"])] == ["a", "b"]
    assert client.collections_retrieve("Lead", ["00Q1", "00Q2"], ["Id", "Name"]) == [{"Id": "00Q1"}, None]

    delete, retrieve = fake.data_requests()
    assert delete.url.params["allOrNone"] == "false"
    assert fake.body_of(retrieve) == {"ids": ["00Q1", "00Q2"], "fields": ["Id", "Name"]}


def test_a_collections_reply_of_the_wrong_length_retries_later(client: Any, fake: Any) -> None:
    fake.route("POST", r"/composite/sobjects$", fake.reply(200, []))
    with pytest.raises(RetryLater, match="sObject Collections"):
        client.collections_create("Account", [{"Name": "x"}])


def test_updated_and_deleted_windows(client: Any, fake: Any) -> None:
    fake.route("GET", r"/updated/$", fake.reply(200, {"ids": ["001A"], "latestDateCovered": "x"}))
    fake.route("GET", r"/deleted/$", fake.reply(200, {"deletedRecords": [], "latestDateCovered": "x"}))
    start = dt.datetime(2024, 5, 1, 12, 0, 30, 500, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    end = dt.datetime(2024, 5, 2, tzinfo=dt.UTC)
    assert client.updated("Account", start, end)["ids"] == ["001A"]
    assert client.deleted("Account", start, end)["deletedRecords"] == []
    for request in fake.data_requests():
        assert request.url.params["start"] == "2024-05-01T10:00:30+00:00"
        assert request.url.params["end"] == "2024-05-02T00:00:00+00:00"
        assert b"%2B00%3A00" in request.url.raw_path


def test_one_relogin_for_many_threads(client: Any, fake: Any) -> None:
    fake.route("GET", r"/limits$", fake.reply(200, {}))
    client.limits()
    fake.expire_sessions()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            client.limits()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fake.logins == 2


def test_an_unusable_ca_file_is_a_config_error(tmp_path: Any, settings: SalesforceSettings) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"ca\.pem"):
        SalesforceClient(
            SalesforceSettings(client_id="c", auth="client_credentials", client_secret="s", ca_file=bad)
        )


@given(st.lists(st.one_of(st.none(), st.sampled_from("abcdef")), max_size=60), st.integers(1, 7))
def test_plan_chunks(keys: list[str | None], size: int) -> None:
    chunks = plan_chunks(keys, size)
    flat = sorted(i for c in chunks for i in c)
    assert flat == list(range(len(keys)))  # every write exactly once
    where = {i: n for n, c in enumerate(chunks) for i in c}
    for chunk in chunks:
        assert 0 < len(chunk) <= size
        named = [keys[i] for i in chunk if keys[i] is not None]
        assert len(named) == len(set(named))  # no key twice in one call
        assert chunk == sorted(chunk)
    for i, key in enumerate(keys):
        for j in range(i):
            if key is not None and keys[j] == key:
                assert where[j] < where[i]  # a later write of the same record goes in a later call
    if all(k is None for k in keys):
        assert len(chunks) == -(-len(keys) // size)  # no needless calls
