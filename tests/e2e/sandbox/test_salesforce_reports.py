"""The Reports and Dashboards REST API and the Report object, through simple-salesforce and raw HTTP."""

from __future__ import annotations

import gc
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.salesforce.ids import make_id
from crmsync.sandbox.salesforce.org import ReportDef
from crmsync.sandbox.salesforce.reports import MAX_DETAIL_ROWS, XLSX
from crmsync.sandbox.salesforce.routing import routed_session
from crmsync.sandbox.salesforce.seeds import (
    CONTRACTS_REPORT_ID,
    OPPORTUNITIES_REPORT_ID,
    PIPELINE_REPORT_ID,
    USAGE_REPORT_ID,
)
from crmsync.sandbox.tls import Materials, ensure_materials

VERSION = "66.0"
BASE = f"/services/data/v{VERSION}"


@pytest.fixture(scope="module")
def materials(tmp_path_factory: pytest.TempPathFactory) -> Materials:
    return ensure_materials(tmp_path_factory.mktemp("sf-keys"))


@pytest.fixture(scope="module")
def served(materials: Materials) -> Iterator[SalesforceEmulator]:
    emulator = SalesforceEmulator(materials=materials)
    with serve(emulator, materials=materials):
        yield emulator


@pytest.fixture
def emulator(served: SalesforceEmulator) -> SalesforceEmulator:
    served.seed("demo")
    return served


@pytest.fixture
def sf(emulator: SalesforceEmulator, materials: Materials) -> Iterator[Salesforce]:
    session: requests.Session = routed_session(emulator.base_url, ca_file=materials.ca_file)
    yield Salesforce(
        session_id=emulator.new_session(), instance_url=emulator.base_url, session=session, version=VERSION
    )
    gc.collect()
    session.close()


@pytest.fixture
def http(emulator: SalesforceEmulator, materials: Materials) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {emulator.new_session()}"}
    with httpx.Client(
        base_url=emulator.base_url + BASE,
        headers=headers,
        verify=ssl.create_default_context(cafile=str(materials.ca_file)),
    ) as client:
        yield client


def test_report_object_answers_soql(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    records = sf.query("SELECT Id, Name, DeveloperName, FolderName, Format FROM Report ORDER BY Name")[
        "records"
    ]
    assert [(r["Id"], r["Name"], r["DeveloperName"], r["Format"]) for r in records] == [
        (OPPORTUNITIES_REPORT_ID, "Opportunities by stage", "Opportunities_by_stage", "Tabular"),
        (PIPELINE_REPORT_ID, "Pipeline by stage", "Pipeline_by_stage", "Summary"),
    ]
    assert records[0]["attributes"]["type"] == "Report"
    assert records[0]["FolderName"] == "Public Reports"
    emulator.seed("billing")
    names = {r["Name"] for r in sf.query("SELECT Name FROM Report WHERE Format = 'Summary'")["records"]}
    assert names == {"Usage by contract"}


def test_list_and_describe(sf: Salesforce) -> None:
    listed = {r["id"]: r for r in sf.restful("analytics/reports")}
    assert set(listed) == {OPPORTUNITIES_REPORT_ID, PIPELINE_REPORT_ID}
    entry = listed[OPPORTUNITIES_REPORT_ID]
    assert entry["url"] == f"{BASE}/analytics/reports/{OPPORTUNITIES_REPORT_ID}"
    assert entry["describeUrl"] == entry["url"] + "/describe"
    assert entry["instancesUrl"] == entry["url"] + "/instances"
    described = sf.restful(f"analytics/reports/{OPPORTUNITIES_REPORT_ID}/describe")
    meta = described["reportMetadata"]
    assert meta["reportFormat"] == "TABULAR" and meta["name"] == "Opportunities by stage"
    assert meta["detailColumns"][:3] == [
        "Opportunity.StageName",
        "Opportunity.Name",
        "Opportunity.Account.Name",
    ]
    info = described["reportExtendedMetadata"]["detailColumnInfo"]
    assert info["Opportunity.Amount"] == {"dataType": "currency", "label": "Amount"}
    filterable = described["reportTypeMetadata"]["categories"][0]["columns"]
    assert "Opportunity.LeadSource" in filterable  # any field of the report type, shown or not


def test_tabular_run(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    summary = sf.restful(f"analytics/reports/{OPPORTUNITIES_REPORT_ID}")
    assert summary["hasDetailRows"] is False and summary["factMap"]["T!T"]["rows"] == []
    result = sf.restful(f"analytics/reports/{OPPORTUNITIES_REPORT_ID}", params={"includeDetails": "true"})
    assert result["attributes"]["reportId"] == OPPORTUNITIES_REPORT_ID
    assert result["attributes"]["type"] == "Report"
    assert result["allData"] is True and result["hasDetailRows"] is True
    fact = result["factMap"]["T!T"]
    opportunities = emulator.records("Opportunity")
    assert fact["aggregates"] == [{"label": str(len(opportunities)), "value": len(opportunities)}]
    assert len(fact["rows"]) == len(opportunities)
    columns = result["reportMetadata"]["detailColumns"]
    first = dict(zip(columns, fact["rows"][0]["dataCells"], strict=True))
    opp = next(o for o in opportunities if o["Id"] == first["Opportunity.Id"]["value"])
    assert first["Opportunity.StageName"] == {"label": opp["StageName"], "value": opp["StageName"]}
    assert first["Opportunity.Amount"]["value"] == {"amount": opp["Amount"], "currency": None}
    assert first["Opportunity.Amount"]["label"] == f"${opp['Amount']:,.2f}"


def test_summary_run_groups_and_sums(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    result = sf.restful(f"analytics/reports/{PIPELINE_REPORT_ID}", params={"includeDetails": "true"})
    groups = result["groupingsDown"]["groupings"]
    opportunities = emulator.records("Opportunity")
    stages = sorted({o["StageName"] for o in opportunities}, key=str.lower)
    assert [g["label"] for g in groups] == stages
    for group in groups:
        members = [o for o in opportunities if o["StageName"] == group["value"]]
        cell = result["factMap"][f"{group['key']}!T"]
        assert cell["aggregates"][0]["value"] == pytest.approx(sum(o["Amount"] for o in members))
        assert cell["aggregates"][1]["value"] == len(members)
        assert len(cell["rows"]) == len(members)
    total = result["factMap"]["T!T"]
    assert total["aggregates"][1]["value"] == len(opportunities) and total["rows"] == []
    assert result["reportMetadata"]["groupingsDown"][0]["name"] == "Opportunity.StageName"


def test_filters_from_the_request_and_the_report(sf: Salesforce, emulator: SalesforceEmulator) -> None:
    body = {
        "reportMetadata": {
            "reportFilters": [
                {"column": "Opportunity.StageName", "operator": "equals", "value": "Closed Won"}
            ]
        }
    }
    result = sf.restful(
        f"analytics/reports/{OPPORTUNITIES_REPORT_ID}",
        params={"includeDetails": "true"},
        method="POST",
        json=body,
    )
    won = [o for o in emulator.records("Opportunity") if o["StageName"] == "Closed Won"]
    assert len(result["factMap"]["T!T"]["rows"]) == len(won) > 0
    assert result["reportMetadata"]["reportFilters"] == body["reportMetadata"]["reportFilters"]
    body["reportMetadata"]["reportFilters"] = [
        {"column": "Opportunity.Amount", "operator": "greaterThan", "value": "20000"}
    ]
    result = sf.restful(
        f"analytics/reports/{OPPORTUNITIES_REPORT_ID}",
        params={"includeDetails": "true"},
        method="POST",
        json=body,
    )
    big = [o for o in emulator.records("Opportunity") if o["Amount"] > 20000]
    assert result["factMap"]["T!T"]["aggregates"][0]["value"] == len(big) > 0
    emulator.seed("billing")  # "Active contracts" filters on Status itself
    result = sf.restful(f"analytics/reports/{CONTRACTS_REPORT_ID}", params={"includeDetails": "true"})
    assert [row["dataCells"][2]["value"] for row in result["factMap"]["T!T"]["rows"]] == ["Activated"] * 2
    usage = sf.restful(f"analytics/reports/{USAGE_REPORT_ID}")
    assert usage["factMap"]["T!T"]["aggregates"][0]["value"] == 16.0


def test_errors(sf: Salesforce, http: httpx.Client) -> None:
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.restful("analytics/reports/00O000000000000AAA")
    assert missing.value.content[0]["errorCode"] == "NOT_FOUND"
    for bad in (
        {"column": "Opportunity.Nope", "operator": "equals", "value": "x"},
        {"column": "Opportunity.Amount", "operator": "between", "value": "1"},
        {"column": "Opportunity.Amount", "operator": "greaterThan", "value": "lots"},
    ):
        with pytest.raises(SalesforceMalformedRequest) as err:
            sf.restful(
                f"analytics/reports/{OPPORTUNITIES_REPORT_ID}",
                method="POST",
                json={"reportMetadata": {"reportFilters": [bad]}},
            )
        assert err.value.content[0]["errorCode"] == "BAD_REQUEST"
    xlsx = http.get(f"/analytics/reports/{OPPORTUNITIES_REPORT_ID}", headers={"Accept": XLSX})
    assert xlsx.status_code == 406
    assert xlsx.json()[0]["errorCode"] == "NOT_ACCEPTABLE"


def test_asynchronous_instances(sf: Salesforce) -> None:
    started = sf.restful(f"analytics/reports/{PIPELINE_REPORT_ID}/instances", method="POST")
    assert started["id"].startswith("0LG") and started["status"] == "New"
    assert started["url"] == f"{BASE}/analytics/reports/{PIPELINE_REPORT_ID}/instances/{started['id']}"
    listed = sf.restful(f"analytics/reports/{PIPELINE_REPORT_ID}/instances")
    assert [i["id"] for i in listed] == [started["id"]]
    done = sf.restful(f"analytics/reports/{PIPELINE_REPORT_ID}/instances/{started['id']}")
    assert done["attributes"]["status"] == "Success" and done["attributes"]["completionDate"]
    assert done["hasDetailRows"] is True and done["factMap"]["0!T"]["rows"]
    with pytest.raises(SalesforceResourceNotFound):
        sf.restful(f"analytics/reports/{OPPORTUNITIES_REPORT_ID}/instances/{started['id']}")


def test_detail_rows_stop_at_two_thousand(emulator: SalesforceEmulator, http: httpx.Client) -> None:
    account = emulator.records("Account")[0]["Id"]
    count = MAX_DETAIL_ROWS + 150
    for n in range(count):
        emulator.insert(
            "Contact", {"LastName": f"Bulk {n:05d}", "AccountId": account, "Email": f"c{n}@example.com"}
        )
    rid = make_id("00O", 99)
    emulator.add_report(
        ReportDef(rid, "All contacts", "Contact", [("Last Name", "LastName"), ("Email", "Email")], "LastName")
    )
    total = count + len([c for c in emulator.records("Contact") if not c["LastName"].startswith("Bulk ")])
    reply = http.get(f"/analytics/reports/{rid}", params={"includeDetails": "true"})
    assert reply.status_code == 200
    body: dict[str, Any] = reply.json()
    assert body["allData"] is False
    assert len(body["factMap"]["T!T"]["rows"]) == MAX_DETAIL_ROWS
    assert body["factMap"]["T!T"]["aggregates"][0]["value"] == total  # aggregates count every row
    without = http.get(f"/analytics/reports/{rid}").json()
    assert without["allData"] is True and without["factMap"]["T!T"]["rows"] == []
