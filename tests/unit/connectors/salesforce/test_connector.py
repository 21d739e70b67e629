"""SalesforceConnector: batched writes, reads by id, change polling, SOQL views and lock checks."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from crmsync.connectors.base import Write
from crmsync.errors import BudgetExhausted, FixTheData, RetryLater

BASE = "/services/data/v66.0"


class FakeCollections:
    """Answers sObject Collections calls the way Salesforce does, record by record."""

    def __init__(self) -> None:
        self.existing: dict[str, str] = {"K-old": "a0X000000000OLD"}
        self.created = 0
        self.fail_call: int | None = None
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.fail_call == self.calls:
            return httpx.Response(503, json=[{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}])
        if request.method == "DELETE":
            ids = request.url.params["ids"].split(",")
            return httpx.Response(200, json=[self._delete(i) for i in ids])
        records = json.loads(request.content)["records"]
        if request.url.path.endswith("/Ext__c"):
            return httpx.Response(200, json=[self._upsert(r) for r in records])
        if request.method == "PATCH":
            return httpx.Response(200, json=[self._update(r) for r in records])
        return httpx.Response(200, json=[self._create(r) for r in records])

    def _refuse(self, code: str, message: str, field: str | None = None) -> dict[str, Any]:
        return {
            "success": False,
            "errors": [{"statusCode": code, "message": message, "fields": [field] if field else []}],
        }

    def _create(self, r: dict[str, Any]) -> dict[str, Any]:
        if not r.get("Name"):
            return self._refuse("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", "Name")
        self.created += 1
        return {"id": f"a0X{self.created:015d}", "success": True, "errors": []}

    def _upsert(self, r: dict[str, Any]) -> dict[str, Any]:
        key = r["Ext__c"]
        if r.get("Qty__c", 0) < 0:
            return self._refuse("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Quantity must be positive")
        if key in self.existing:
            return {"id": self.existing[key], "success": True, "errors": [], "created": False}
        self.created += 1
        self.existing[key] = f"a0X{self.created:015d}"
        return {"id": self.existing[key], "success": True, "errors": [], "created": True}

    def _update(self, r: dict[str, Any]) -> dict[str, Any]:
        if r["Id"].endswith("GONE"):
            return self._refuse("ENTITY_IS_DELETED", "entity is deleted")
        return {"id": r["Id"], "success": True, "errors": []}

    def _delete(self, record_id: str) -> dict[str, Any]:
        if record_id.endswith("GONE"):
            return {"id": record_id, **self._refuse("ENTITY_IS_DELETED", "entity is deleted")}
        if record_id.endswith("LOCKED"):
            return {
                "id": record_id,
                **self._refuse("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access"),
            }
        return {"id": record_id, "success": True, "errors": []}


@pytest.fixture
def org(fake: Any) -> FakeCollections:
    collections = FakeCollections()
    fake.route("POST", r"/composite/sobjects$", collections)
    fake.route("PATCH", r"/composite/sobjects", collections)
    fake.route("DELETE", r"/composite/sobjects$", collections)
    return collections


def test_mixed_batch_results_come_back_in_input_order(
    connector: Any, org: FakeCollections, fake: Any
) -> None:
    writes = [
        Write("w0", "delete", target_id="a0X000000000001"),
        Write("w1", "upsert", {"Qty__c": 1}, external_id_field="Ext__c", external_id="K-new"),
        Write("w2", "create", {"Name": "fresh"}),
        Write("w3", "update", {"Qty__c": 5}, target_id="a0X000000000002"),
        Write("w4", "upsert", {"Qty__c": 2}, external_id_field="Ext__c", external_id="K-old"),
        Write("w5", "create", {}),
        Write("w6", "update", {"Qty__c": 5}, target_id="a0X0000000000GONE"),
        Write("w7", "delete", target_id="a0X0000000000GONE"),
        Write("w8", "upsert", {"Qty__c": -1}, external_id_field="Ext__c", external_id="K-bad"),
        Write("w9", "delete", target_id="a0X00000000LOCKED"),
    ]

    results = connector.write_batch("Usage__c", writes)

    assert [r.key for r in results] == [w.key for w in writes]
    assert [r.ok for r in results] == [True, True, True, True, True, False, False, True, False, False]
    assert results[1].created is True and results[4].created is False
    assert results[4].target_id == "a0X000000000OLD"
    assert results[2].created is True and results[2].target_id == "a0X000000000000001"  # creates go first
    assert results[1].target_id == "a0X000000000000002"
    assert results[3].target_id == "a0X000000000002"
    assert results[7].created is False  # already deleted: deleting is idempotent
    missing = results[5].error
    assert isinstance(missing, FixTheData) and missing.vendor_code == "REQUIRED_FIELD_MISSING"
    assert missing.object_name == "Usage__c" and "Name" in missing.message
    assert missing.url == f"https://acme.my.salesforce.com{BASE}/composite/sobjects"
    assert isinstance(results[6].error, FixTheData) and results[6].error.vendor_code == "ENTITY_IS_DELETED"
    assert results[8].error is not None and results[8].error.record == "Ext__c=K-bad"
    assert results[8].error.url is not None and results[8].error.url.endswith(
        "/composite/sobjects/Usage__c/Ext__c"
    )
    assert type(results[9].error) is RetryLater
    # creates, upserts, updates, deletes: one call each
    assert [(r.method, r.url.path) for r in fake.data_requests()] == [
        ("POST", f"{BASE}/composite/sobjects"),
        ("PATCH", f"{BASE}/composite/sobjects/Usage__c/Ext__c"),
        ("PATCH", f"{BASE}/composite/sobjects"),
        ("DELETE", f"{BASE}/composite/sobjects"),
    ]


def test_a_thousand_upserts_take_five_calls(connector: Any, org: FakeCollections, fake: Any) -> None:
    writes = [
        Write(f"k{i}", "upsert", {"Qty__c": i}, external_id_field="Ext__c", external_id=f"U-{i}")
        for i in range(1000)
    ]
    results = connector.write_batch("Usage__c", writes)
    assert len(fake.data_requests()) == 5
    assert all(r.ok and r.created for r in results)
    assert len({r.target_id for r in results}) == 1000
    bodies = [fake.body_of(r) for r in fake.data_requests()]
    assert [b["records"][0]["Ext__c"] for b in bodies] == ["U-0", "U-200", "U-400", "U-600", "U-800"]
    assert all(b["allOrNone"] is False for b in bodies)


def test_the_same_external_id_twice_goes_to_a_later_call(
    connector: Any, org: FakeCollections, fake: Any
) -> None:
    writes = [
        Write("a", "upsert", {"Qty__c": 1}, external_id_field="Ext__c", external_id="K-1"),
        Write("b", "upsert", {"Qty__c": 2}, external_id_field="Ext__c", external_id="K-1"),
    ]
    results = connector.write_batch("Usage__c", writes)
    assert [(r.ok, r.created) for r in results] == [(True, True), (True, False)]
    assert results[0].target_id == results[1].target_id
    assert len(fake.data_requests()) == 2


def test_invalid_writes_are_refused_without_a_call(connector: Any, org: FakeCollections, fake: Any) -> None:
    writes = [
        Write("u", "update", {"A": 1}),
        Write("d", "delete"),
        Write("x", "upsert", {"A": 1}, external_id_field="Ext__c"),
        Write("y", "upsert", {"A": 1}, external_id_field="Ext__c/../x", external_id="1"),
    ]
    results = connector.write_batch("Usage__c", writes)
    assert all(not r.ok and isinstance(r.error, FixTheData) for r in results)
    assert fake.data_requests() == []


def test_a_failed_first_call_raises(connector: Any, org: FakeCollections) -> None:
    org.fail_call = 1
    with pytest.raises(RetryLater):
        connector.write_batch("Usage__c", [Write("a", "create", {"Name": "x"})])


def test_a_failed_later_call_keeps_what_was_written(connector: Any, org: FakeCollections) -> None:
    org.fail_call = 2
    writes = [
        Write("c", "create", {"Name": "x"}),
        Write("u", "upsert", {"Qty__c": 1}, external_id_field="Ext__c", external_id="K-9"),
        Write("d", "delete", target_id="a0X000000000001"),
    ]
    results = connector.write_batch("Usage__c", writes)
    assert results[0].ok and results[0].target_id
    assert [type(r.error) for r in results[1:]] == [RetryLater, RetryLater]
    assert org.calls == 2  # the deletes were not sent after the failure


def test_budget_exhaustion_raises_for_the_whole_batch(connector: Any, fake: Any) -> None:
    fake.route(
        "POST",
        r"/composite/sobjects$",
        fake.error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    )
    with pytest.raises(BudgetExhausted):
        connector.write_batch("Account", [Write("a", "create", {"Name": "x"})])


DESCRIBE = {
    "name": "Lead",
    "fields": [
        {"name": "Id", "type": "id"},
        {"name": "LastName", "type": "string"},
        {"name": "Address", "type": "address"},
        {"name": "SystemModstamp", "type": "datetime"},
        {"name": "IsDeleted", "type": "boolean"},
    ],
}


def test_read_records_by_id(connector: Any, fake: Any) -> None:
    fake.route("GET", r"/sobjects/Lead/describe$", fake.reply(200, DESCRIBE))
    row = {
        "attributes": {"type": "Lead"},
        "Id": "00Q1",
        "LastName": "Ng",
        "SystemModstamp": "2024-05-01T10:00:00.000+0000",
        "IsDeleted": False,
    }
    fake.route("POST", r"/composite/sobjects/Lead$", fake.reply(200, [row, None]))

    records = list(connector.read_records("Lead", ["00Q1", "00Q404"]))

    assert len(records) == 1
    assert records[0].id == "00Q1" and records[0].fields["LastName"] == "Ng"
    assert "attributes" not in records[0].fields
    assert records[0].modified == "2024-05-01T10:00:00.000+0000"
    retrieve = fake.data_requests()[-1]
    assert fake.body_of(retrieve)["fields"] == ["Id", "LastName", "SystemModstamp", "IsDeleted"]


def test_read_changes_polls_system_modstamp_with_overlap(connector: Any, fake: Any) -> None:
    fake.route("GET", r"/sobjects/Lead/describe$", fake.reply(200, DESCRIBE))
    rows = [
        {"Id": "00Q1", "LastName": "A", "SystemModstamp": "2024-05-01T10:00:01.000+0000", "IsDeleted": False},
        {"Id": "00Q2", "LastName": "B", "SystemModstamp": "2024-05-01T10:00:05.000+0000", "IsDeleted": True},
        {
            "Id": "00Q1",
            "LastName": "A2",
            "SystemModstamp": "2024-05-01T10:00:07.000+0000",
            "IsDeleted": False,
        },
    ]
    fake.route("GET", r"/queryAll$", fake.reply(200, {"done": True, "records": rows}))

    batch = connector.read_changes("Lead", "2024-05-01T10:00:02.500+0000")

    soql = fake.data_requests()[-1].url.params["q"]
    assert soql == (
        "SELECT Id, LastName, SystemModstamp, IsDeleted FROM Lead"
        " WHERE SystemModstamp > 2024-05-01T10:00:00Z ORDER BY SystemModstamp, Id"
    )
    assert [(r.id, r.fields["LastName"], r.deleted) for r in batch.records] == [
        ("00Q2", "B", True),
        ("00Q1", "A2", False),
    ]
    assert batch.watermark == "2024-05-01T10:00:07.000+0000"


def test_read_changes_from_the_beginning_and_when_nothing_changed(connector: Any, fake: Any) -> None:
    fake.route("GET", r"/sobjects/Lead/describe$", fake.reply(200, DESCRIBE))
    fake.route("GET", r"/queryAll$", fake.reply(200, {"done": True, "records": []}))

    assert connector.read_changes("Lead", None).watermark is None
    assert "WHERE" not in fake.data_requests()[-1].url.params["q"]
    batch = connector.read_changes("Lead", "2024-05-01T10:00:00.000+0000")
    assert (batch.records, batch.watermark) == ([], "2024-05-01T10:00:00.000+0000")


def test_query_view_binds_parameters_and_drops_attributes(connector: Any, fake: Any) -> None:
    rows = [{"attributes": {"type": "Contract"}, "Id": "800A", "Account": {"attributes": {}, "Name": "Acme"}}]
    fake.route("GET", r"/query$", fake.reply(200, {"done": True, "records": rows}))

    out = connector.query_view(
        "SELECT Id, Account.Name FROM Contract WHERE ContractNumber = :number", {"number": "0001' OR Id != '"}
    )

    assert out == [{"Id": "800A", "Account": {"Name": "Acme"}}]
    assert fake.data_requests()[0].url.params["q"] == (
        "SELECT Id, Account.Name FROM Contract WHERE ContractNumber = '0001\\' OR Id != \\''"
    )


@pytest.mark.parametrize(("records", "expected"), [([{"Id": "800A"}], True), ([], False)])
def test_record_matches(connector: Any, fake: Any, records: list[Any], expected: bool) -> None:
    fake.route("GET", r"/query$", fake.reply(200, {"done": True, "records": records}))
    assert connector.record_matches("Contract", "800A'", "Status = 'Fulfilled'") is expected
    assert fake.data_requests()[0].url.params["q"] == (
        "SELECT Id FROM Contract WHERE Id = '800A\\'' AND (Status = 'Fulfilled') LIMIT 1"
    )


def test_object_names_are_checked(connector: Any) -> None:
    from crmsync.errors import ConfigError

    with pytest.raises(ConfigError):
        connector.record_matches("Contract WHERE", "800A", "Id != null")


def test_budget_is_reported_through_the_connector(connector: Any, fake: Any) -> None:
    fake.route("GET", r"/limits$", fake.reply(200, {}, usage="api-usage=14000/15000"))
    connector.check()
    usage = connector.api_usage()
    assert (usage.used, usage.limit) == (14000, 15000)
    assert connector.over_guard() is True
    assert connector.calls_made == 1


def _halted(ref: str) -> dict[str, Any]:
    body = [{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back"}]
    return {"body": body, "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref}


def test_an_all_or_none_creation_raises_the_refused_records_error_not_the_rolled_back_ones(
    connector: Any, fake: Any
) -> None:
    missing = [
        {
            "errorCode": "REQUIRED_FIELD_MISSING",
            "message": "Required fields are missing: [CloseDate]",
            "fields": ["CloseDate"],
        }
    ]
    fake.route(
        "POST",
        r"/composite$",
        fake.reply(
            200,
            {
                "compositeResponse": [
                    _halted("Account"),
                    {"body": missing, "httpHeaders": {}, "httpStatusCode": 400, "referenceId": "Opportunity"},
                    _halted("Lead"),
                ]
            },
        ),
    )

    with pytest.raises(FixTheData) as refused:
        connector.create_related(
            "Lead",
            {"LastName": "Lovelace"},
            [
                ("Account", {"Name": "Engines"}, {}),
                ("Opportunity", {"Name": "Engines"}, {"AccountId": "Account"}),
            ],
        )

    assert refused.value.vendor_code == "REQUIRED_FIELD_MISSING"
    assert refused.value.object_name == "Opportunity"
    assert "Required fields are missing: [CloseDate]" in str(refused.value)


def test_an_all_or_none_creation_halted_everywhere_is_retried_later(connector: Any, fake: Any) -> None:
    fake.route(
        "POST", r"/composite$", fake.reply(200, {"compositeResponse": [_halted("Account"), _halted("Lead")]})
    )

    with pytest.raises(RetryLater):
        connector.create_related("Lead", {"LastName": "Lovelace"}, [("Account", {"Name": "Engines"}, {})])
