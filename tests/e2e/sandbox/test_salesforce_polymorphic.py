"""Polymorphic relationships (``Task.What``/``Who``/``Owner``) through the unmodified simple-salesforce."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.salesforce.routing import routed_session
from crmsync.sandbox.tls import Materials, ensure_materials

VERSION = "66.0"


@pytest.fixture(scope="module")
def materials(tmp_path_factory: pytest.TempPathFactory) -> Materials:
    return ensure_materials(tmp_path_factory.mktemp("sf-keys"))


@pytest.fixture(scope="module")
def emulator(materials: Materials) -> Iterator[SalesforceEmulator]:
    emulator = SalesforceEmulator(materials=materials)
    with serve(emulator, materials=materials):
        emulator.seed("empty")
        yield emulator


@pytest.fixture(scope="module")
def sf(emulator: SalesforceEmulator, materials: Materials) -> Iterator[Salesforce]:
    session: requests.Session = routed_session(emulator.base_url, ca_file=materials.ca_file)
    yield Salesforce(
        session_id=emulator.new_session(), instance_url=emulator.base_url, session=session, version=VERSION
    )
    gc.collect()
    session.close()


@pytest.fixture(scope="module")
def ids(sf: Salesforce) -> dict[str, str]:
    account = sf.Account.create({"Name": "Acme Corp", "Type": "Customer - Direct", "Industry": "Energy"})[
        "id"
    ]
    opportunity = sf.Opportunity.create(
        {"Name": "Acme rollout", "StageName": "Prospecting", "CloseDate": "2026-12-31", "Amount": 1200}
    )["id"]
    contract = sf.Contract.create({"AccountId": account})["id"]
    contact = sf.Contact.create({"LastName": "Lovelace", "FirstName": "Ada"})["id"]
    lead = sf.Lead.create({"LastName": "Hopper", "Company": "Navy"})["id"]
    tasks = {
        "on_opportunity": sf.Task.create({"Subject": "Call", "WhatId": opportunity, "WhoId": contact})["id"],
        "on_account": sf.Task.create({"Subject": "Send Letter", "WhatId": account, "WhoId": lead})["id"],
        "on_contract": sf.Task.create({"Subject": "Other", "WhatId": contract})["id"],
        "on_nothing": sf.Task.create({"Subject": "Send Quote"})["id"],
    }
    return {"account": account, "opportunity": opportunity, "contract": contract, "lead": lead, **tasks}


def _by_id(result: dict[str, object]) -> dict[str, dict[str, object]]:
    records = result["records"]
    assert isinstance(records, list)
    return {r["Id"]: r for r in records}


def test_what_resolves_to_a_name_object_typed_by_the_related_record(
    sf: Salesforce, ids: dict[str, str]
) -> None:
    rows = _by_id(sf.query("SELECT Id, Subject, What.Name, What.Type, Who.Name, Who.Type FROM Task"))
    on_opp = rows[ids["on_opportunity"]]
    assert on_opp["What"] == {
        "attributes": {
            "type": "Name",
            "url": f"/services/data/v{VERSION}/sobjects/Opportunity/{ids['opportunity']}",
        },
        "Name": "Acme rollout",
        "Type": "Opportunity",
    }
    assert on_opp["Who"]["Type"] == "Contact" and on_opp["Who"]["Name"] == "Ada Lovelace"  # type: ignore[index]
    on_account = rows[ids["on_account"]]
    # the Account's own Type field ("Customer - Direct") is not what What.Type means
    assert on_account["What"]["Type"] == "Account"  # type: ignore[index]
    assert on_account["Who"]["attributes"]["url"].endswith(f"/Lead/{ids['lead']}")  # type: ignore[index]
    assert on_account["Who"]["Type"] == "Lead"  # type: ignore[index]
    # a Contract's name in the Name object is its number
    contract = sf.Contract.get(ids["contract"])
    assert rows[ids["on_contract"]]["What"]["Name"] == contract["ContractNumber"]  # type: ignore[index]
    assert rows[ids["on_nothing"]]["What"] is None


def test_owner_of_a_task_is_polymorphic_and_of_an_account_is_a_user(
    sf: Salesforce, ids: dict[str, str]
) -> None:
    task = sf.query(f"SELECT Owner.Name, Owner.Type FROM Task WHERE Id = '{ids['on_account']}'")["records"][0]
    assert task["Owner"]["attributes"]["type"] == "Name"
    assert task["Owner"]["Type"] == "User"
    account = sf.query(f"SELECT Owner.Name FROM Account WHERE Id = '{ids['account']}'")["records"][0]
    assert account["Owner"]["attributes"]["type"] == "User"
    described = {f["name"]: f for f in sf.Task.describe()["fields"]}
    assert described["WhatId"]["polymorphicForeignKey"] is True
    assert described["OwnerId"]["polymorphicForeignKey"] is True
    assert {f["name"]: f for f in sf.Account.describe()["fields"]}["OwnerId"][
        "polymorphicForeignKey"
    ] is False


def test_where_what_type_in(sf: Salesforce, ids: dict[str, str]) -> None:
    result = sf.query("SELECT Id FROM Task WHERE What.Type IN ('Account','Opportunity')")
    assert set(_by_id(result)) == {ids["on_opportunity"], ids["on_account"]}
    result = sf.query("SELECT Id FROM Task WHERE What.Type = 'contract' ORDER BY What.Name")
    assert set(_by_id(result)) == {ids["on_contract"]}
    result = sf.query("SELECT Id FROM Task WHERE What.Type NOT IN ('Account') AND WhatId != null")
    assert set(_by_id(result)) == {ids["on_opportunity"], ids["on_contract"]}


def test_typeof_selects_fields_by_runtime_type(sf: Salesforce, ids: dict[str, str]) -> None:
    result = sf.query(
        "SELECT Id, TYPEOF What WHEN Opportunity THEN Name, StageName, Amount "
        "WHEN Account THEN Name, Industry ELSE Name END FROM Task"
    )
    rows = _by_id(result)
    base = f"/services/data/v{VERSION}/sobjects"
    assert rows[ids["on_opportunity"]]["What"] == {
        "attributes": {"type": "Opportunity", "url": f"{base}/Opportunity/{ids['opportunity']}"},
        "Name": "Acme rollout",
        "StageName": "Prospecting",
        "Amount": 1200.0,
    }
    assert rows[ids["on_account"]]["What"] == {
        "attributes": {"type": "Account", "url": f"{base}/Account/{ids['account']}"},
        "Name": "Acme Corp",
        "Industry": "Energy",
    }
    else_branch = rows[ids["on_contract"]]["What"]
    assert set(else_branch) == {"attributes", "Name"}  # type: ignore[arg-type]
    assert rows[ids["on_nothing"]]["What"] is None


@pytest.mark.parametrize(
    ("query", "code"),
    [
        # a WHEN type the relationship cannot point at
        ("SELECT TYPEOF What WHEN Lead THEN Name END FROM Task", "INVALID_TYPE"),
        # a WHEN field the type does not have
        ("SELECT TYPEOF What WHEN Account THEN StageName END FROM Task", "INVALID_FIELD"),
        # ELSE fields come from the Name object
        ("SELECT TYPEOF What WHEN Account THEN Name ELSE StageName END FROM Task", "INVALID_FIELD"),
        # TYPEOF on an ordinary lookup
        ("SELECT TYPEOF Account WHEN Account THEN Name END FROM Contact", "INVALID_FIELD"),
        # the TYPEOF relationship also in the field list
        ("SELECT What.Name, TYPEOF What WHEN Account THEN Name END FROM Task", "MALFORMED_QUERY"),
        ("SELECT TYPEOF What ELSE Name END FROM Task", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task WHERE What.StageName = 'x'", "INVALID_FIELD"),
    ],
)
def test_typeof_errors(sf: Salesforce, ids: dict[str, str], query: str, code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query(query)
    assert err.value.content[0]["errorCode"] == code
