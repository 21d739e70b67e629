"""The unmodified simple-salesforce client against the Salesforce emulator over HTTPS."""

from __future__ import annotations

import csv
import datetime as dt
import gc
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.salesforce.routing import routed_session
from crmsync.sandbox.salesforce.seeds import OPPORTUNITIES_REPORT_ID
from crmsync.sandbox.tls import Materials, ensure_materials

VERSION = "66.0"


@pytest.fixture(scope="module")
def sf_materials(tmp_path_factory: pytest.TempPathFactory) -> Materials:
    return ensure_materials(tmp_path_factory.mktemp("sf-keys"))


@pytest.fixture(scope="module")
def served(sf_materials: Materials) -> Iterator[SalesforceEmulator]:
    emulator = SalesforceEmulator(materials=sf_materials, page_size=2000)
    with serve(emulator, materials=sf_materials):
        yield emulator


@pytest.fixture
def emulator(served: SalesforceEmulator) -> SalesforceEmulator:
    served.seed("demo")
    served.set_daily_limit(15000)
    return served


@pytest.fixture
def session(emulator: SalesforceEmulator, sf_materials: Materials) -> Iterator[requests.Session]:
    s = routed_session(emulator.base_url, ca_file=sf_materials.ca_file)
    yield s
    # a client exception kept by pytest.raises holds its response in a reference cycle: collect it so
    # that its connection goes back to the pool and is closed with the session
    gc.collect()
    s.close()


@pytest.fixture
def sf(emulator: SalesforceEmulator, session: requests.Session) -> Salesforce:
    """Logged in with the JWT bearer flow at (what the client believes is) login.salesforce.com."""
    creds = emulator.credentials()
    return Salesforce(
        username=creds["SALESFORCE_USERNAME"],
        consumer_key=creds["SALESFORCE_CLIENT_ID"],
        privatekey_file=creds["SALESFORCE_JWT_KEY_FILE"],
        session=session,
        version=VERSION,
    )


def test_session_id_and_instance_url_over_verified_https(
    emulator: SalesforceEmulator, session: requests.Session
) -> None:
    sf = Salesforce(
        session_id=emulator.new_session(), instance_url=emulator.base_url, session=session, version=VERSION
    )
    assert emulator.base_url.startswith("https://")
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 5


def test_jwt_login_answers_instance_url_of_the_emulator(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    assert f"https://{sf.sf_instance}" == emulator.base_url
    assert sf.session_id.startswith("00D")


def test_password_flow_login(emulator: SalesforceEmulator, session: requests.Session) -> None:
    creds = emulator.credentials()
    sf = Salesforce(
        username=creds["SALESFORCE_USERNAME"],
        password=creds["SALESFORCE_PASSWORD"],
        consumer_key=creds["SALESFORCE_CLIENT_ID"],
        consumer_secret=creds["SALESFORCE_CLIENT_SECRET"],
        session=session,
        version=VERSION,
    )
    assert sf.Account.describe()["keyPrefix"] == "001"


def test_create_get_update_delete(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    created = sf.Lead.create({"LastName": "Turing", "Company": "Bletchley"})
    assert created["success"] is True and created["errors"] == []
    lead_id = created["id"]
    assert len(lead_id) == 18 and lead_id.startswith("00Q")
    lead = sf.Lead.get(lead_id)
    assert lead["attributes"] == {"type": "Lead", "url": f"/services/data/v{VERSION}/sobjects/Lead/{lead_id}"}
    assert lead["Status"] == "Open - Not Contacted"
    assert lead["CreatedDate"].endswith(".000+0000")
    assert sf.Lead.get(lead_id[:15])["Id"] == lead_id

    assert sf.Lead.update(lead_id, {"Email": "alan@example.com"}) == 204
    assert sf.Lead.get(lead_id)["Email"] == "alan@example.com"
    assert sf.Lead.delete(lead_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as info:
        sf.Lead.get(lead_id)
    assert info.value.content == [
        {"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}
    ]
    assert emulator.get("Lead", lead_id)["IsDeleted"] is True  # type: ignore[index]


def test_upsert_by_external_id_creates_then_updates(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    contract_id = emulator.records("Contract")[0]["Id"]
    first = sf.Usage__c.upsert(
        "Ad_Id__c/ad 9/x", {"Contract__c": contract_id, "Quantity__c": 2}, raw_response=True
    )
    assert first.status_code == 201
    assert first.json()["created"] is True
    # the client does not encode the value: a value with a slash must be encoded by the caller
    second = sf.Usage__c.upsert("Ad_Id__c/ad%209%2Fx", {"Quantity__c": 5}, raw_response=True)
    assert second.status_code == 200
    assert second.json() == {"id": first.json()["id"], "success": True, "errors": [], "created": False}
    assert sf.Usage__c.get_by_custom_id("Ad_Id__c", "ad-1")["Ad_Id__c"] == "ad-1"
    matches = [r for r in emulator.records("Usage__c") if r["Ad_Id__c"] == "ad 9/x"]
    assert [r["Quantity__c"] for r in matches] == [5.0]


def test_query_and_query_all_page_through_5000_records(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    account = emulator.records("Account")[0]["Id"]
    for n in range(5000):
        emulator.insert("Contact", {"LastName": f"Bulk {n:05d}", "AccountId": account})
    first = sf.query("SELECT Id, LastName, Account.Name FROM Contact WHERE LastName LIKE 'Bulk%'")
    assert first["totalSize"] == 5000 and first["done"] is False
    assert len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith(f"/services/data/v{VERSION}/query/01g")
    everything = sf.query_all(
        "SELECT Id, LastName FROM Contact WHERE LastName LIKE 'Bulk%' ORDER BY LastName"
    )
    assert everything["totalSize"] == 5000
    names = [r["LastName"] for r in everything["records"]]
    assert names == sorted(names) and len(set(names)) == 5000

    gone = everything["records"][0]["Id"]
    sf.Contact.delete(gone)
    live = sf.query("SELECT COUNT() FROM Contact WHERE LastName LIKE 'Bulk%'")
    assert live["totalSize"] == 4999
    with_deleted = sf.query_all(
        f"SELECT Id, IsDeleted FROM Contact WHERE Id = '{gone}'", include_deleted=True
    )
    assert with_deleted["records"][0]["IsDeleted"] is True


def test_query_batch_size_header(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    for n in range(450):
        emulator.insert("Account", {"Name": f"Paged {n}"})
    sf.headers["Sforce-Query-Options"] = "batchSize=200"
    page = sf.query("SELECT Id FROM Account WHERE Name LIKE 'Paged%'")
    assert len(page["records"]) == 200 and page["totalSize"] == 450
    rest = list(sf.query_all_iter("SELECT Id FROM Account WHERE Name LIKE 'Paged%'"))
    assert len(rest) == 450


def test_describe(sf: Salesforce) -> None:
    describe = sf.Opportunity.describe()
    fields = {f["name"]: f for f in describe["fields"]}
    required = {
        name
        for name, f in fields.items()
        if f["createable"] and not f["nillable"] and not f["defaultedOnCreate"]
    }
    assert required == {"Name", "StageName", "CloseDate"}
    assert fields["IsWon"]["updateable"] is False
    assert "Closed Won" in [p["value"] for p in fields["StageName"]["picklistValues"]]
    assert fields["AccountId"]["referenceTo"] == ["Account"]
    usage = {f["name"]: f for f in sf.Usage__c.describe()["fields"]}
    assert usage["Ad_Id__c"]["externalId"] is True and usage["Ad_Id__c"]["unique"] is True
    assert usage["Contract__c"]["relationshipName"] == "Contract__r"
    contract_status = {f["name"]: f for f in sf.Contract.describe()["fields"]}["Status"]
    assert "Fulfilled" in [p["value"] for p in contract_status["picklistValues"]]
    names = [o["name"] for o in sf.describe()["sobjects"]]
    assert {"Lead", "Account", "Contact", "Opportunity", "Task", "Contract", "User", "Usage__c"} <= set(names)


def test_collections_through_restful(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    created = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "Name": "One"},
                {"attributes": {"type": "Account"}},
                {"attributes": {"type": "Contact"}, "LastName": "Two"},
            ],
        },
    )
    assert [r["success"] for r in created] == [True, False, True]
    assert created[1]["errors"] == [
        {
            "statusCode": "REQUIRED_FIELD_MISSING",
            "message": "Required fields are missing: [Name]",
            "fields": ["Name"],
        }
    ]
    ids = [created[0]["id"], created[2]["id"]]
    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Account"}, "id": ids[0], "Name": "Uno"}]},
    )
    assert updated == [{"id": ids[0], "success": True, "errors": []}]
    fetched = sf.restful(f"composite/sobjects/Account?ids={ids[0]},001000000000000AAA&fields=Id,Name")
    assert fetched[0]["Name"] == "Uno" and fetched[1] is None
    upserted = sf.restful(
        "composite/sobjects/Usage__c/Ad_Id__c",
        method="PATCH",
        json={
            "records": [
                {"attributes": {"type": "Usage__c"}, "Ad_Id__c": "ad-1", "Quantity__c": 9},
                {"attributes": {"type": "Usage__c"}, "Ad_Id__c": "ad-new", "Quantity__c": 1},
            ]
        },
    )
    assert [r["created"] for r in upserted] == [False, True]
    deleted = sf.restful(f"composite/sobjects?ids={','.join(ids)}", method="DELETE")
    assert [r["success"] for r in deleted] == [True, True]


def test_collections_all_or_none_rolls_back(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    before = len(emulator.records("Account"))
    result = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "Account"}, "Name": "Kept?"},
                {"attributes": {"type": "Account"}, "Phone": "1"},
            ],
        },
    )
    assert result[0]["success"] is False
    assert result[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert result[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert len(emulator.records("Account")) == before


def test_composite_with_references(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    base = f"/services/data/v{VERSION}"
    reply = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": f"{base}/sobjects/Account",
                    "referenceId": "acct",
                    "body": {"Name": "Composite Co"},
                },
                {
                    "method": "POST",
                    "url": f"{base}/sobjects/Contact",
                    "referenceId": "ct",
                    "body": {"LastName": "Ref", "AccountId": "@{acct.id}"},
                },
                {
                    "method": "GET",
                    "url": f"{base}/query?q=SELECT+Id+FROM+Contact+WHERE+LastName='Ref'",
                    "referenceId": "q",
                },
                {
                    "method": "PATCH",
                    "url": f"{base}/sobjects/Contact/@{{q.records[0].Id}}",
                    "referenceId": "up",
                    "body": {"Title": "Boss"},
                },
            ],
        },
    )
    statuses = [(r["referenceId"], r["httpStatusCode"]) for r in reply["compositeResponse"]]
    assert statuses == [("acct", 201), ("ct", 201), ("q", 200), ("up", 204)]
    contact_id = reply["compositeResponse"][1]["body"]["id"]
    contact = emulator.get("Contact", contact_id)
    assert contact is not None
    assert contact["AccountId"] == reply["compositeResponse"][0]["body"]["id"] and contact["Title"] == "Boss"


def test_composite_all_or_none_halts(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    base = f"/services/data/v{VERSION}"
    before = len(emulator.records("Account"))
    reply = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": f"{base}/sobjects/Account",
                    "referenceId": "a",
                    "body": {"Name": "X"},
                },
                {"method": "POST", "url": f"{base}/sobjects/Contact", "referenceId": "bad", "body": {}},
                {
                    "method": "POST",
                    "url": f"{base}/sobjects/Account",
                    "referenceId": "c",
                    "body": {"Name": "Y"},
                },
            ],
        },
    )
    codes = [r["body"][0]["errorCode"] for r in reply["compositeResponse"]]
    assert codes == ["PROCESSING_HALTED", "REQUIRED_FIELD_MISSING", "PROCESSING_HALTED"]
    assert all(r["httpStatusCode"] == 400 for r in reply["compositeResponse"])
    assert len(emulator.records("Account")) == before


def test_bulk2_insert_and_query(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    records = [{"Name": f"Bulk Account {n}", "NumberOfEmployees": str(n)} for n in range(30)]
    records.append({"Name": "", "NumberOfEmployees": "1"})
    result = sf.bulk2.Account.insert(records=records, wait=0.01)
    assert result[0]["numberRecordsProcessed"] == 31 and result[0]["numberRecordsFailed"] == 1
    job_id = result[0]["job_id"]
    ok = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_successful_records(job_id))))
    assert len(ok) == 30 and ok[0]["sf__Created"] == "true" and ok[0]["sf__Id"].startswith("001")
    failed = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_failed_records(job_id))))
    assert failed[0]["sf__Error"].startswith("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]")

    pages = list(
        sf.bulk2.Account.query(
            "SELECT Id, Name FROM Account WHERE Name LIKE 'Bulk Account%'", max_records=10, wait=0.01
        )
    )
    assert len(pages) == 3
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert len(rows) == 30 and set(rows[0]) == {"Id", "Name"}


def test_expired_session(emulator: SalesforceEmulator, session: requests.Session, sf: Salesforce) -> None:
    plain = Salesforce(
        session_id=emulator.new_session(), instance_url=emulator.base_url, session=session, version=VERSION
    )
    emulator.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as info:
        plain.query("SELECT Id FROM Account")
    assert info.value.status == 401
    assert info.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    # a client that logged in itself logs in again and carries on
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 5


def test_session_lifetime(emulator: SalesforceEmulator, session: requests.Session) -> None:
    sf = Salesforce(
        session_id=emulator.new_session(), instance_url=emulator.base_url, session=session, version=VERSION
    )
    sf.query("SELECT Id FROM Account LIMIT 1")
    emulator.advance_clock(7201)
    try:
        with pytest.raises(SalesforceExpiredSession):
            sf.query("SELECT Id FROM Account LIMIT 1")
    finally:
        emulator.advance_clock(-7201)


def test_daily_api_limit(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    emulator.set_daily_limit(emulator.api_usage + 2)
    sf.query("SELECT Id FROM Account LIMIT 1")
    sf.query("SELECT Id FROM Account LIMIT 1")
    assert sf.api_usage["api-usage"].used == sf.api_usage["api-usage"].total
    with pytest.raises(SalesforceRefusedRequest) as info:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert info.value.status == 403
    assert info.value.content == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]


def test_malformed_query_and_invalid_field(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query("SELEC Id FROM Account")
    assert info.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query("SELECT Nope__c FROM Account")
    assert info.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_report_export_with_sid_cookie(emulator: SalesforceEmulator, session: requests.Session) -> None:
    token = emulator.new_session()
    url = f"{emulator.base_url}/{OPPORTUNITIES_REPORT_ID}?isdtp=p1&export=1&enc=UTF-8&xf=csv"
    reply = session.get(url, cookies={"sid": token})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    lines = reply.text.splitlines()
    assert lines[0] == '"Stage","Opportunity Name","Account Name","Amount","Close Date","Opportunity ID"'
    assert lines[-4:] == [
        "",
        '"Grand Totals (10 records)"',
        '"Confidential Information - Do Not Distribute"',
        '"Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved."',
    ]
    rows = list(csv.reader(lines[1:11]))
    assert len(rows) == 10 and all(len(r[5]) == 15 for r in rows)
    unauthenticated = session.get(url, allow_redirects=False)
    assert unauthenticated.status_code == 302


def test_call_options_client_lands_in_the_journal(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    options = {"Sforce-Call-Options": "client=crmsync"}
    account = sf.Account.create({"Name": "Echo"}, headers=options)["id"]
    sf.Account.update(account, {"Phone": "555"}, headers=options)
    emulator.update("Account", account, {"Phone": "556"})
    changes = emulator.changes("Account", account)
    assert [(c["operation"], c["client"]) for c in changes] == [
        ("create", "crmsync"),
        ("update", "crmsync"),
        ("update", None),
    ]
    assert changes[1]["fields"] == ["Phone"]


def _limit_header(reply: Any) -> str:
    return str(reply.headers["Sforce-Limit-Info"])


def test_limit_info_header_and_limits(emulator: SalesforceEmulator, session: requests.Session) -> None:
    token = emulator.new_session()
    headers = {"Authorization": f"Bearer {token}"}
    first = session.get(f"{emulator.base_url}/services/data/v{VERSION}/limits", headers=headers)
    used = emulator.api_usage
    assert _limit_header(first) == f"api-usage={used}/15000"
    assert first.json()["DailyApiRequests"] == {"Max": 15000, "Remaining": 15000 - used}
    versions = session.get(f"{emulator.base_url}/services/data/")
    assert "Sforce-Limit-Info" not in versions.headers
    assert versions.json()[-1] == {"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"}
    assert emulator.api_usage == used


def test_updated_and_deleted_through_the_client(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    start = emulator._now() - dt.timedelta(minutes=10)
    changed = sf.Account.create({"Name": "Changed"})["id"]
    removed = sf.Account.create({"Name": "Removed"})["id"]
    sf.Account.delete(removed)
    emulator.advance_clock(120)
    try:
        end = emulator._now()
        updated = sf.Account.updated(start, end)
        deleted = sf.Account.deleted(start, end)
    finally:
        emulator.advance_clock(-120)
    assert changed in updated["ids"] and removed not in updated["ids"]
    assert [d["id"] for d in deleted["deletedRecords"]] == [removed]
    assert updated["latestDateCovered"] == end.strftime("%Y-%m-%dT%H:%M:00.000+0000")


def test_control_routes(emulator: SalesforceEmulator, session: requests.Session, sf: Salesforce) -> None:
    assert (
        session.post(f"{emulator.base_url}/_sandbox/salesforce/daily-limit", json={"limit": 3}).status_code
        == 200
    )
    assert emulator.org.usage.limit == 3
    token = emulator.new_session()
    assert session.post(f"{emulator.base_url}/_sandbox/salesforce/expire-sessions").status_code == 200
    reply = session.get(
        f"{emulator.base_url}/services/data/v{VERSION}/limits", headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 401


@pytest.mark.slow
def test_a_pooled_connection_stays_usable_when_polls_are_slower_than_five_seconds(
    emulator: SalesforceEmulator, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real vendors keep an idle connection open for minutes; a server that closes it after a few
    seconds races a client taking it from its pool (``RemoteDisconnected``)."""
    connects: list[int] = []
    connect = urllib3.connection.HTTPSConnection.connect

    def counting_connect(self: urllib3.connection.HTTPSConnection) -> None:
        connects.append(1)
        connect(self)

    monkeypatch.setattr(urllib3.connection.HTTPSConnection, "connect", counting_connect)
    sf = Salesforce(
        session_id=emulator.new_session(), instance_url=emulator.base_url, session=session, version=VERSION
    )
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 5
    for _ in range(2):
        time.sleep(6)  # the idle time is what is tested: longer than uvicorn's default keep-alive (5 s)
        assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 5
    assert len(connects) == 1  # one connection, reused: never closed under the client
