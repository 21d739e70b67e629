"""Query paging, Collections and Composite limits, Bulk 2.0 lifecycle, faults, ids and state files."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from crmsync.sandbox.faults import FaultRule
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.salesforce.ids import checksum, make_id, normalize
from crmsync.sandbox.salesforce.seeds import BILLING_CONTRACTS
from crmsync.sandbox.salesforce.store import DmlError

V = "/services/data/v66.0"


def _code(reply: Any, status: int) -> str:
    assert reply.status_code == status, reply.text
    return str(reply.json()[0]["errorCode"])


# -- ids --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("id15", "suffix"), [("001xx000003DGb1", "AAG"), ("00190000001pPvH", "AAU"), ("a0D30000001n7Pi", "EAI")]
)
def test_checksum(id15: str, suffix: str) -> None:
    assert checksum(id15) == suffix
    assert normalize(id15) == id15 + suffix
    assert normalize(id15 + suffix) == id15 + suffix


def test_normalize_refuses_bad_ids() -> None:
    assert normalize("001xx000003DGb1AAA") is None  # wrong suffix
    assert normalize("short") is None
    assert normalize(42) is None
    assert make_id("001", 1).startswith("001") and normalize(make_id("001", 1)) == make_id("001", 1)


# -- query --------------------------------------------------------------------------------------------
def test_query_pages_with_locator(client: TestClient, emulator: SalesforceEmulator) -> None:
    for n in range(450):
        emulator.insert("Account", {"Name": f"P{n:03d}"})
    first = client.get(
        f"{V}/query", params={"q": "SELECT Id, Name FROM Account WHERE Name LIKE 'P%' ORDER BY Name"}
    )
    body = first.json()
    assert (body["totalSize"], body["done"], len(body["records"])) == (450, False, 200)
    second = client.get(body["nextRecordsUrl"]).json()
    third = client.get(second["nextRecordsUrl"]).json()
    assert third["done"] is True and "nextRecordsUrl" not in third and len(third["records"]) == 50
    assert third["records"][-1]["Name"] == "P449"
    assert _code(client.get(f"{V}/query/01g000000000000AAA-200"), 400) == "INVALID_QUERY_LOCATOR"


def test_query_errors(client: TestClient) -> None:
    assert _code(client.get(f"{V}/query", params={"q": "SELECT FROM"}), 400) == "MALFORMED_QUERY"
    assert _code(client.get(f"{V}/query", params={"q": "SELECT Id FROM Nope__c"}), 400) == "INVALID_TYPE"
    assert _code(client.get(f"{V}/query", params={"q": "SELECT Bad FROM Account"}), 400) == "INVALID_FIELD"
    assert _code(client.get(f"{V}/query"), 400) == "MALFORMED_QUERY"


def test_count_query(client: TestClient) -> None:
    body = client.get(f"{V}/query", params={"q": "SELECT COUNT() FROM Opportunity"}).json()
    assert body == {"totalSize": 10, "done": True, "records": []}


# -- collections and composite ----------------------------------------------------------------------------
def test_collection_limit(client: TestClient) -> None:
    records = [{"attributes": {"type": "Account"}, "Name": str(n)} for n in range(201)]
    assert (
        _code(client.post(f"{V}/composite/sobjects", json={"records": records}), 400) == "EXCEEDED_ID_LIMIT"
    )


def test_collection_delete_and_retrieve_post(client: TestClient, emulator: SalesforceEmulator) -> None:
    ids = [emulator.insert("Account", {"Name": f"D{n}"}) for n in range(2)]
    reply = client.delete(f"{V}/composite/sobjects", params={"ids": f"{ids[0]},bogus"})
    assert reply.json()[0] == {"id": ids[0], "success": True, "errors": []}
    assert reply.json()[1]["errors"][0]["statusCode"] == "MALFORMED_ID"
    fetched = client.post(f"{V}/composite/sobjects/Account", json={"ids": ids, "fields": ["Name"]}).json()
    assert fetched[0] is None and fetched[1]["Name"] == "D1"


def test_composite_limits_and_independent_failures(client: TestClient) -> None:
    sub = {"method": "GET", "url": f"{V}/limits", "referenceId": "r"}
    too_many = client.post(f"{V}/composite", json={"compositeRequest": [sub] * 26})
    assert too_many.status_code == 400
    reply = client.post(
        f"{V}/composite",
        json={
            "compositeRequest": [
                {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "bad", "body": {}},
                {
                    "method": "POST",
                    "url": f"{V}/sobjects/Contact",
                    "referenceId": "dep",
                    "body": {"LastName": "x", "AccountId": "@{bad.id}"},
                },
                {
                    "method": "POST",
                    "url": f"{V}/sobjects/Account",
                    "referenceId": "ok",
                    "body": {"Name": "ok"},
                },
            ]
        },
    ).json()["compositeResponse"]
    assert [r["httpStatusCode"] for r in reply] == [400, 400, 201]
    assert reply[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert reply[2]["httpHeaders"]["Location"] == f"{V}/sobjects/Account/{reply[2]['body']['id']}"


def test_composite_counts_as_one_call(client: TestClient, emulator: SalesforceEmulator) -> None:
    before = emulator.api_usage
    client.post(
        f"{V}/composite",
        json={
            "compositeRequest": [
                {"method": "GET", "url": f"{V}/limits", "referenceId": f"r{n}"} for n in range(5)
            ]
        },
    )
    assert emulator.api_usage == before + 1


# -- Bulk 2.0 -----------------------------------------------------------------------------------------
def _ingest(client: TestClient, body: dict[str, Any], data: str) -> dict[str, Any]:
    job = client.post(f"{V}/jobs/ingest", json={"contentType": "CSV", **body}).json()
    assert job["state"] == "Open" and job["id"].startswith("750")
    upload = client.put(
        f"{V}/jobs/ingest/{job['id']}/batches", content=data.encode(), headers={"Content-Type": "text/csv"}
    )
    assert upload.status_code == 201
    closed = client.patch(f"{V}/jobs/ingest/{job['id']}", json={"state": "UploadComplete"}).json()
    assert closed["state"] == "UploadComplete"
    done = client.get(f"{V}/jobs/ingest/{job['id']}").json()
    assert done["state"] == "JobComplete"
    return dict(done)


def test_bulk_upsert_with_parent_lookup_and_null(client: TestClient, emulator: SalesforceEmulator) -> None:
    contract = emulator.records("Contract")[0]["Id"]
    data = (
        "Ad_Id__c,Contract__c,Quantity__c,Product__c\n"
        f"ad-1,{contract},7,#N/A\n"
        f"bulk-2,{contract},1,Video\n"
        f"bulk-3,{contract},many,Video\n"
    )
    job = _ingest(
        client, {"object": "Usage__c", "operation": "upsert", "externalIdFieldName": "Ad_Id__c"}, data
    )
    assert (job["numberRecordsProcessed"], job["numberRecordsFailed"]) == (3, 1)
    ok = list(csv.DictReader(io.StringIO(client.get(f"{V}/jobs/ingest/{job['id']}/successfulResults").text)))
    assert [(r["Ad_Id__c"], r["sf__Created"]) for r in ok] == [("ad-1", "false"), ("bulk-2", "true")]
    updated = next(r for r in emulator.records("Usage__c") if r["Ad_Id__c"] == "ad-1")
    assert updated["Quantity__c"] == 7.0 and updated["Product__c"] is None
    assert client.delete(f"{V}/jobs/ingest/{job['id']}").status_code == 204


def test_bulk_delete_and_lookup_by_external_id(client: TestClient, emulator: SalesforceEmulator) -> None:
    emulator.define_object("Shop__c", {"fields": {"Code__c": {"type": "string", "externalId": True}}})
    emulator.insert("Shop__c", {"Code__c": "S1"})
    emulator.define_object(
        "Sale__c",
        {
            "fields": {
                "Shop__c": {"type": "reference", "referenceTo": "Shop__c"},
                "Amount__c": {"type": "currency"},
            }
        },
    )
    job = _ingest(
        client, {"object": "Sale__c", "operation": "insert"}, "Shop__r.Code__c,Amount__c\nS1,5\nS9,6\n"
    )
    assert job["numberRecordsFailed"] == 1
    sale = emulator.records("Sale__c")[0]
    assert sale["Shop__c"] == emulator.records("Shop__c")[0]["Id"]
    deleted = _ingest(client, {"object": "Sale__c", "operation": "delete"}, f"Id\n{sale['Id']}\n")
    assert deleted["numberRecordsFailed"] == 0 and emulator.records("Sale__c") == []


def test_bulk_job_states(client: TestClient) -> None:
    job = client.post(f"{V}/jobs/ingest", json={"object": "Account", "operation": "insert"}).json()
    client.put(f"{V}/jobs/ingest/{job['id']}/batches", content=b"Name\nA\nB\n")
    aborted = client.patch(f"{V}/jobs/ingest/{job['id']}", json={"state": "Aborted"}).json()
    assert aborted["state"] == "Aborted"
    unprocessed = client.get(f"{V}/jobs/ingest/{job['id']}/unprocessedrecords").text
    assert unprocessed.splitlines() == ['"Name"', '"A"', '"B"']
    late = client.put(f"{V}/jobs/ingest/{job['id']}/batches", content=b"Name\nC\n")
    assert _code(late, 409) == "INVALIDJOBSTATE"
    bad = client.post(f"{V}/jobs/ingest", json={"object": "Nope", "operation": "insert"})
    assert _code(bad, 400) == "INVALIDJOB"
    no_ext = client.post(f"{V}/jobs/ingest", json={"object": "Account", "operation": "upsert"})
    assert _code(no_ext, 400) == "INVALIDJOB"


def test_bulk_query_job(client: TestClient, emulator: SalesforceEmulator) -> None:
    job = client.post(
        f"{V}/jobs/query",
        json={"operation": "query", "query": "SELECT Id, Name, Account.Name FROM Opportunity"},
    ).json()
    assert job["state"] == "UploadComplete"
    early = client.get(f"{V}/jobs/query/{job['id']}/results")
    assert _code(early, 412) == "JOB_NOT_COMPLETE"
    assert client.get(f"{V}/jobs/query/{job['id']}").json()["numberRecordsProcessed"] == 10
    page = client.get(f"{V}/jobs/query/{job['id']}/results", params={"maxRecords": 6})
    assert page.headers["Sforce-NumberOfRecords"] == "6" and page.headers["Sforce-Locator"] != "null"
    assert page.text.splitlines()[0] == '"Id","Name","Account.Name"'
    last = client.get(
        f"{V}/jobs/query/{job['id']}/results",
        params={"maxRecords": 6, "locator": page.headers["Sforce-Locator"]},
    )
    assert last.headers["Sforce-Locator"] == "null" and last.headers["Sforce-NumberOfRecords"] == "4"
    other_version = client.get(f"/services/data/v60.0/jobs/query/{job['id']}/results")
    assert other_version.status_code == 409
    malformed = client.post(f"{V}/jobs/query", json={"operation": "query", "query": "SELECT"})
    assert _code(malformed, 400) == "MALFORMED_QUERY"


# -- faults, report, Python API, state ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("server_error", 500, "UNKNOWN_EXCEPTION"),
        ("unavailable", 503, "SERVER_UNAVAILABLE"),
        ("limit_exceeded", 403, "REQUEST_LIMIT_EXCEEDED"),
        ("rate_limit", 403, "REQUEST_LIMIT_EXCEEDED"),
        ("session_expired", 401, "INVALID_SESSION_ID"),
        ("lock", 400, "UNABLE_TO_LOCK_ROW"),
    ],
)
def test_fault_kinds(
    client: TestClient, emulator: SalesforceEmulator, kind: str, status: int, code: str
) -> None:
    emulator.faults.add(FaultRule(path="/sobjects", error=kind, count=1))
    reply = client.get(f"{V}/sobjects")
    assert _code(reply, status) == code
    assert "Sforce-Limit-Info" in reply.headers
    if kind == "rate_limit":
        assert reply.json()[0]["message"] == "ConcurrentRequests (Concurrent API Requests) Limit exceeded."
    assert client.get(f"{V}/sobjects").status_code == 200


def test_fault_status_on_token_endpoint(client: TestClient, emulator: SalesforceEmulator) -> None:
    emulator.faults.add(FaultRule(path="/oauth2/", status=503, count=1))
    reply = client.post("/services/oauth2/token", data={"grant_type": "password"})
    assert reply.status_code == 503 and set(reply.json()) == {"error", "error_description"}


def test_python_insert_validates(emulator: SalesforceEmulator) -> None:
    with pytest.raises(DmlError) as info:
        emulator.insert("Account", {"Phone": "1"})
    assert info.value.errors[0].code == "REQUIRED_FIELD_MISSING"
    with pytest.raises(KeyError):
        emulator.records("Nope__c")


def test_billing_seed_has_known_contracts() -> None:
    em = SalesforceEmulator()
    em.seed("billing")
    by_name = {r["Name"]: r for r in em.records("Contract")}
    assert {n: r["Id"] for n, r in by_name.items()} == BILLING_CONTRACTS
    assert by_name["ACME-2025"]["Status"] == "Fulfilled"
    assert len(em.records("Usage__c")) == 3


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = tmp_path / "sf.json"
    first = SalesforceEmulator(state_file=state)
    first.seed("demo")
    doomed = first.records("Account")[0]["Id"]
    first.delete("Account", doomed)
    token = first.new_session()
    first.save_file()
    second = SalesforceEmulator(state_file=state)
    assert second.load_file()
    assert second.summary()["objects"] == first.summary()["objects"]
    assert second.get("Account", doomed)["IsDeleted"] is True  # type: ignore[index]
    new_id = second.insert("Usage__c", {"Ad_Id__c": "after-restore"})
    assert new_id not in {r["Id"] for r in first.records("Usage__c")}
    with pytest.raises(DmlError):
        second.insert("Usage__c", {"Ad_Id__c": "ad-1"})  # the unique index came back too
    assert second.org.sessions.valid(token)


def test_control_api_seed_and_state(client: TestClient) -> None:
    assert client.post("/_sandbox/seed/billing").status_code == 200
    state = client.get("/_sandbox/state").json()
    assert state["emulator"] == "salesforce" and state["objects"]["Contract"] == 3
