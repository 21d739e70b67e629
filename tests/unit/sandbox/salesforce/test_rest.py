"""sObject REST: statuses, error bodies (one test per error), derived fields, change windows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from starlette.testclient import TestClient

from crmsync.sandbox.salesforce import SalesforceEmulator

V = "/services/data/v66.0"


def _one(emulator: SalesforceEmulator, obj: str) -> dict[str, Any]:
    return emulator.records(obj)[0]


def _error(reply: Any, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert isinstance(body, list) and len(body) == 1
    assert body[0]["errorCode"] == code
    return dict(body[0])


def test_required_field_missing(client: TestClient) -> None:
    err = _error(client.post(f"{V}/sobjects/Lead", json={"LastName": "X"}), 400, "REQUIRED_FIELD_MISSING")
    assert err == {
        "message": "Required fields are missing: [Company]",
        "errorCode": "REQUIRED_FIELD_MISSING",
        "fields": ["Company"],
    }


def test_required_field_cleared_on_update(client: TestClient, emulator: SalesforceEmulator) -> None:
    account = _one(emulator, "Account")["Id"]
    _error(
        client.patch(f"{V}/sobjects/Account/{account}", json={"Name": None}), 400, "REQUIRED_FIELD_MISSING"
    )


def test_invalid_field(client: TestClient) -> None:
    err = _error(client.post(f"{V}/sobjects/Account", json={"Name": "A", "Nope__c": 1}), 400, "INVALID_FIELD")
    assert err["message"] == "No such column 'Nope__c' on sobject of type Account"


def test_invalid_field_for_insert_update(client: TestClient, emulator: SalesforceEmulator) -> None:
    opp = _one(emulator, "Opportunity")["Id"]
    err = _error(
        client.patch(f"{V}/sobjects/Opportunity/{opp}", json={"IsWon": True}),
        400,
        "INVALID_FIELD_FOR_INSERT_UPDATE",
    )
    assert err["fields"] == ["IsWon"]
    _error(
        client.post(f"{V}/sobjects/Account", json={"Name": "A", "Id": opp}),
        400,
        "INVALID_FIELD_FOR_INSERT_UPDATE",
    )


def test_malformed_id_of_another_type(client: TestClient, emulator: SalesforceEmulator) -> None:
    contact = _one(emulator, "Contact")["Id"]
    err = _error(client.patch(f"{V}/sobjects/Account/{contact}", json={"Name": "x"}), 400, "MALFORMED_ID")
    assert err == {
        "message": f"Account ID: id value of incorrect type: {contact}",
        "errorCode": "MALFORMED_ID",
        "fields": ["Id"],
    }


def test_not_found(client: TestClient) -> None:
    assert client.get(f"{V}/sobjects/Nope__c").json() == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]
    assert client.get(f"{V}/sobjects/Nope__c").status_code == 404
    _error(client.get(f"{V}/sobjects/Account/001000000000000AAA"), 404, "NOT_FOUND")
    err = _error(client.get(f"{V}/sobjects/Account/not-an-id"), 404, "NOT_FOUND")
    assert err["message"] == "Provided external ID field does not exist or is not accessible: not-an-id"


def test_entity_is_deleted(client: TestClient, emulator: SalesforceEmulator) -> None:
    account = emulator.insert("Account", {"Name": "Doomed"})
    assert client.delete(f"{V}/sobjects/Account/{account}").status_code == 204
    for reply in (
        client.get(f"{V}/sobjects/Account/{account}"),
        client.patch(f"{V}/sobjects/Account/{account}", json={"Name": "x"}),
        client.delete(f"{V}/sobjects/Account/{account}"),
    ):
        assert _error(reply, 404, "ENTITY_IS_DELETED")["message"] == "entity is deleted"


def test_duplicate_value_on_unique_field(client: TestClient, emulator: SalesforceEmulator) -> None:
    existing = next(r for r in emulator.records("Usage__c") if r["Ad_Id__c"] == "ad-1")
    err = _error(client.post(f"{V}/sobjects/Usage__c", json={"Ad_Id__c": "AD-1"}), 400, "DUPLICATE_VALUE")
    assert (
        err["message"]
        == f"duplicate value found: Ad_Id__c duplicates value on record with id: {existing['Id']}"
    )


def test_restricted_picklist(client: TestClient) -> None:
    body = {"Name": "O", "StageName": "Dreaming", "CloseDate": "2026-01-01"}
    err = _error(
        client.post(f"{V}/sobjects/Opportunity", json=body), 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    )
    assert err["fields"] == ["StageName"]


def test_string_too_long(client: TestClient) -> None:
    _error(client.post(f"{V}/sobjects/Account", json={"Name": "x" * 256}), 400, "STRING_TOO_LONG")


def test_bad_references(client: TestClient, emulator: SalesforceEmulator) -> None:
    opp = _one(emulator, "Opportunity")["Id"]
    _error(
        client.post(f"{V}/sobjects/Contact", json={"LastName": "L", "AccountId": opp}),
        400,
        "FIELD_INTEGRITY_EXCEPTION",
    )
    _error(
        client.post(f"{V}/sobjects/Contact", json={"LastName": "L", "AccountId": "001000000000999AAA"}),
        400,
        "INVALID_CROSS_REFERENCE_KEY",
    )
    _error(
        client.post(f"{V}/sobjects/Contact", json={"LastName": "L", "AccountId": "zzz"}), 400, "MALFORMED_ID"
    )


def test_json_parser_errors(client: TestClient) -> None:
    _error(
        client.post(f"{V}/sobjects/Account", content=b"{nope", headers={"Content-Type": "application/json"}),
        400,
        "JSON_PARSER_ERROR",
    )
    _error(
        client.post(f"{V}/sobjects/Account", json={"Name": "A", "NumberOfEmployees": "many"}),
        400,
        "JSON_PARSER_ERROR",
    )


def test_converted_lead_refuses_updates(client: TestClient, emulator: SalesforceEmulator) -> None:
    lead = emulator.insert("Lead", {"LastName": "L", "Company": "C", "IsConverted": True})
    _error(
        client.patch(f"{V}/sobjects/Lead/{lead}", json={"Title": "x"}), 400, "CANNOT_UPDATE_CONVERTED_LEAD"
    )


def test_invalid_session_is_a_list_with_www_authenticate(client: TestClient) -> None:
    reply = client.get(f"{V}/sobjects", headers={"Authorization": "Bearer nope"})
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == "Token"
    assert reply.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_request_limit_exceeded(client: TestClient, emulator: SalesforceEmulator) -> None:
    emulator.set_daily_limit(1)
    assert client.get(f"{V}/limits").json()["DailyApiRequests"] == {"Max": 1, "Remaining": 0}
    reply = client.get(f"{V}/limits")
    assert reply.status_code == 403
    assert reply.json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert reply.headers["Sforce-Limit-Info"] == "api-usage=1/1"


def test_method_not_allowed(client: TestClient) -> None:
    _error(client.put(f"{V}/sobjects/Account", json={}), 405, "METHOD_NOT_ALLOWED")


def test_retired_and_unknown_versions(client: TestClient) -> None:
    assert client.get("/services/data/v25.0/sobjects").status_code == 410
    assert client.get("/services/data/v99.0/sobjects").status_code == 404


def test_create_answers_201_and_update_delete_204(client: TestClient, emulator: SalesforceEmulator) -> None:
    reply = client.post(f"{V}/sobjects/Account", json={"Name": "New", "attributes": {"type": "Account"}})
    assert reply.status_code == 201
    rid = reply.json()["id"]
    assert reply.json() == {"id": rid, "success": True, "errors": []}
    patched = client.patch(f"{V}/sobjects/Account/{rid[:15]}", json={"Phone": "1"})
    assert patched.status_code == 204 and patched.content == b""
    got = client.get(f"{V}/sobjects/Account/{rid}?fields=Name,phone").json()
    assert got == {
        "attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{rid}"},
        "Name": "New",
        "Phone": "1",
        "Id": rid,
    }
    _error(client.get(f"{V}/sobjects/Account/{rid}?fields=Nope"), 400, "INVALID_FIELD")


def test_timestamps_move_on_update(client: TestClient, emulator: SalesforceEmulator) -> None:
    rid = emulator.insert("Account", {"Name": "Clock"})
    before = emulator.get("Account", rid)
    emulator.advance_clock(65)
    client.patch(f"{V}/sobjects/Account/{rid}", json={"Phone": "2"})
    after = emulator.get("Account", rid)
    assert before is not None and after is not None
    assert after["CreatedDate"] == before["CreatedDate"]
    assert after["SystemModstamp"] > before["SystemModstamp"]
    assert after["LastModifiedDate"].endswith(".000+0000")


def test_upsert_statuses(client: TestClient, emulator: SalesforceEmulator) -> None:
    created = client.patch(f"{V}/sobjects/Usage__c/Ad_Id__c/ad%2F42", json={"Quantity__c": 1})
    assert created.status_code == 201 and created.json()["created"] is True
    updated = client.patch(f"{V}/sobjects/Usage__c/Ad_Id__c/ad%2F42", json={"Quantity__c": 2})
    assert updated.status_code == 200 and updated.json()["created"] is False
    assert emulator.get("Usage__c", created.json()["id"])["Ad_Id__c"] == "ad/42"  # type: ignore[index]
    old_api = client.patch("/services/data/v45.0/sobjects/Usage__c/Ad_Id__c/ad%2F42", json={"Quantity__c": 3})
    assert old_api.status_code == 204
    only = client.patch(f"{V}/sobjects/Usage__c/Ad_Id__c/missing?updateOnly=true", json={"Quantity__c": 3})
    _error(only, 404, "NOT_FOUND")
    read = client.get(f"{V}/sobjects/Usage__c/Ad_Id__c/ad%2F42")
    assert read.json()["Quantity__c"] == 3.0


def test_upsert_unknown_external_id_field(client: TestClient) -> None:
    err = _error(client.patch(f"{V}/sobjects/Account/Nope__c/1", json={}), 404, "NOT_FOUND")
    assert err["message"] == "Provided external ID field does not exist or is not accessible: Nope__c"


def test_upsert_on_several_matches_answers_300() -> None:
    emulator = SalesforceEmulator(
        custom_objects={"Item__c": {"fields": {"Code__c": {"type": "string", "externalId": True}}}}
    )
    a = emulator.insert("Item__c", {"Code__c": "X"})
    b = emulator.insert("Item__c", {"Code__c": "X"})
    with TestClient(emulator.app(), base_url="https://testserver") as client:
        client.headers["Authorization"] = f"Bearer {emulator.new_session()}"
        reply = client.patch(f"{V}/sobjects/Item__c/Code__c/X", json={})
    assert reply.status_code == 300
    assert reply.json() == [f"{V}/sobjects/Item__c/{a}", f"{V}/sobjects/Item__c/{b}"]


def test_derived_fields(emulator: SalesforceEmulator, client: TestClient) -> None:
    account = _one(emulator, "Account")["Id"]
    opp = client.post(
        f"{V}/sobjects/Opportunity",
        json={"Name": "O", "StageName": "Prospecting", "CloseDate": "2026-06-30", "AccountId": account},
    ).json()["id"]
    client.patch(f"{V}/sobjects/Opportunity/{opp}", json={"StageName": "Closed Won"})
    rec = emulator.get("Opportunity", opp)
    assert rec is not None and (rec["IsClosed"], rec["IsWon"], rec["Probability"]) == (True, True, 100.0)
    contract = client.post(
        f"{V}/sobjects/Contract",
        json={"AccountId": account, "StartDate": "2026-01-15", "ContractTerm": 12, "Status": "Fulfilled"},
    ).json()["id"]
    rec = emulator.get("Contract", contract)
    assert rec is not None and rec["EndDate"] == "2027-01-14" and rec["ContractNumber"].isdigit()
    _error(client.post(f"{V}/sobjects/Contract", json={"Status": "Draft"}), 400, "REQUIRED_FIELD_MISSING")
    task = client.post(
        f"{V}/sobjects/Task", json={"Subject": "[Delivery] x", "WhatId": opp, "Status": "Completed"}
    ).json()["id"]
    rec = emulator.get("Task", task)
    assert rec is not None and rec["IsClosed"] is True and rec["AccountId"] == account
    assert rec["Priority"] == "Normal"


def _window(start: dt.datetime, end: dt.datetime) -> dict[str, str]:
    return {"start": start.isoformat(), "end": end.isoformat()}


def test_updated_and_deleted_windows(client: TestClient, emulator: SalesforceEmulator) -> None:
    start = emulator._now() - dt.timedelta(minutes=5)
    rid = emulator.insert("Account", {"Name": "Fresh"})
    doomed = emulator.insert("Account", {"Name": "Gone"})
    emulator.delete("Account", doomed)
    early = client.get(
        f"{V}/sobjects/Account/updated", params=_window(start, emulator._now() + dt.timedelta(hours=1))
    )
    assert rid not in early.json()["ids"]  # the current minute is not covered yet
    emulator.advance_clock(120)
    now = emulator._now()
    reply = client.get(f"{V}/sobjects/Account/updated", params=_window(start, now + dt.timedelta(hours=1)))
    body = reply.json()
    assert rid in body["ids"] and doomed not in body["ids"]
    assert body["latestDateCovered"] == now.strftime("%Y-%m-%dT%H:%M:00.000+0000")
    deleted = client.get(f"{V}/sobjects/Account/deleted", params=_window(start, now)).json()
    assert [d["id"] for d in deleted["deletedRecords"]] == [doomed]
    assert deleted["earliestDateAvailable"] < deleted["latestDateCovered"]


@pytest.mark.parametrize(
    ("days_back", "minutes", "kind"),
    [(31, 60, "updated"), (16, 60, "deleted"), (1, 0, "updated")],
)
def test_replication_window_checks(
    client: TestClient, emulator: SalesforceEmulator, days_back: int, minutes: int, kind: str
) -> None:
    start = emulator._now() - dt.timedelta(days=days_back)
    reply = client.get(
        f"{V}/sobjects/Account/{kind}", params=_window(start, start + dt.timedelta(minutes=minutes))
    )
    _error(reply, 400, "INVALID_REPLICATION_DATE")


def test_describe_global_and_object(client: TestClient) -> None:
    listing = client.get(f"{V}/sobjects").json()
    assert listing["maxBatchSize"] == 200 and listing["encoding"] == "UTF-8"
    account = client.get(f"{V}/sobjects/Account").json()
    assert account["objectDescribe"]["keyPrefix"] == "001" and len(account["recentItems"]) == 5
    describe = client.get(f"{V}/sobjects/Contact/describe").json()
    assert describe["name"] == "Contact"
    children = client.get(f"{V}/sobjects/Account/describe").json()["childRelationships"]
    assert {"childSObject": "Contact", "field": "AccountId", "relationshipName": "Contacts"}.items() <= next(
        c for c in children if c["childSObject"] == "Contact"
    ).items()
