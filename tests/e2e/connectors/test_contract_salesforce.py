"""The connector contract, run against the Salesforce connector and the Salesforce sandbox."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from crmsync.connectors.contract import ConnectorContract, Harness
from crmsync.connectors.salesforce import SalesforceConnector, SalesforceSettings
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce.emulator import SalesforceEmulator
from crmsync.sandbox.tls import Materials

#: an object of the contract's own: an external id, a required field, a number
PROBE = "Probe__c"
PROBE_SPEC = {
    "label": "Probe",
    "fields": {
        "Key__c": {"type": "string", "length": 80, "externalId": True, "unique": True},
        "Label__c": {"type": "string", "length": 80, "required": True},
        "Amount__c": {"type": "double"},
    },
}


def settings_for(emu: SalesforceEmulator, **kw: Any) -> SalesforceSettings:
    env = emu.credentials()
    values: dict[str, Any] = {
        "auth": "client_credentials",
        "login_url": env["SALESFORCE_LOGIN_URL"],
        "client_id": env["SALESFORCE_CLIENT_ID"],
        "client_secret": env["SALESFORCE_CLIENT_SECRET"],
        "ca_file": Path(env["SALESFORCE_CA_FILE"]),
        "timeout_seconds": 5.0,
        **kw,
    }
    return SalesforceSettings(**values)


@pytest.fixture(scope="module")
def org(materials: Materials) -> Iterator[SalesforceEmulator]:
    """One org for the module (each test cleans up after itself): starting one takes a moment."""
    emulator = SalesforceEmulator(materials=materials)
    emulator.define_object(PROBE, PROBE_SPEC)
    with serve(emulator, materials=materials):
        yield emulator


class SalesforceHarness(Harness):
    object_name = PROBE
    key_field = "Key__c"
    change_overlap = dt.timedelta(seconds=2)  # the connector looks back 2 s for late commits
    connector: SalesforceConnector

    def __init__(self, emu: SalesforceEmulator) -> None:
        self.emu = emu
        self.connector = SalesforceConnector("sf", settings=settings_for(emu))

    def new_fields(self, n: int) -> dict[str, Any]:
        return {"Key__c": self.key(n), "Label__c": f"Probe {n}", "Amount__c": float(n)}

    def changed_fields(self, n: int) -> dict[str, Any]:
        return {"Label__c": f"Changed {n}", "Amount__c": n + 0.5}

    def refused_fields(self) -> dict[str, Any]:
        return {"Key__c": "refused", "Amount__c": 1.0}  # Label__c is required

    def far_get(self, record_id: str, object_name: str | None = None) -> Mapping[str, Any] | None:
        found = self.emu.get(object_name or self.object_name, record_id)
        return None if found is None or found["IsDeleted"] else found

    def far_ids(self, object_name: str | None = None) -> set[str]:
        return {str(r["Id"]) for r in self.emu.records(object_name or self.object_name)}

    def far_create(self, fields: Mapping[str, Any]) -> str:
        return self.emu.insert(self.object_name, fields)

    def far_update(self, record_id: str, fields: Mapping[str, Any]) -> None:
        self.emu.update(self.object_name, record_id, fields)

    def far_delete(self, record_id: str) -> None:
        self.emu.delete(self.object_name, record_id)

    def fail_next_call(self) -> None:
        self.emu.faults.add(path="/services/data/", error="server_error", count=1)

    def refused_connector(self) -> SalesforceConnector:
        return SalesforceConnector("sf-refused", settings=settings_for(self.emu, client_secret="wrong"))

    def condition(self, value: str) -> str:
        return f"Key__c = '{value}'"

    def related_case(
        self, refused: bool
    ) -> tuple[str, Mapping[str, Any], list[tuple[str, Mapping[str, Any], Mapping[str, str]]]]:
        contact: dict[str, Any] = (
            {"FirstName": "Ada"} if refused else {"FirstName": "Ada", "LastName": "Lovelace"}
        )
        return "Contact", contact, [("Account", {"Name": "Analytical Engines"}, {})]

    def spend_budget(self) -> None:
        self.emu.set_daily_limit(self.emu.api_usage + 10)
        for _ in range(20):
            if self.connector.over_guard():
                return
            self.connector.check()


class TestSalesforceContract(ConnectorContract):
    connector_class = SalesforceConnector
    upserts = True
    replays_creates = False  # the engine writes Salesforce by upsert when a retry must land once
    polls_deletions = True
    guards_budget = True

    @pytest.fixture
    def harness(self, org: SalesforceEmulator) -> Iterator[Harness]:
        org.set_daily_limit(15000)
        harness = SalesforceHarness(org)
        yield harness
        harness.connector.close()
        for record in org.records(PROBE):
            org.delete(PROBE, str(record["Id"]))
