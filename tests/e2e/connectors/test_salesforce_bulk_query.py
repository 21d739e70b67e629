"""Bulk API 2.0 queries and ``COUNT()`` through the client, against the Salesforce emulator over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync.connectors.salesforce import SalesforceSettings
from crmsync.connectors.salesforce.client import SalesforceClient
from crmsync.errors import Fatal
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce.emulator import SalesforceEmulator
from crmsync.sandbox.tls import Materials

NAMES = [
    "Acme, Inc.",
    'The "Best" Co',
    "Two\nLines Ltd",
    "Ünïcode GmbH",
    *(f"Account {n}" for n in range(21)),
]


@pytest.fixture
def org(materials: Materials) -> Iterator[SalesforceEmulator]:
    emulator = SalesforceEmulator(materials=materials)
    emulator.seed("empty")
    for n, name in enumerate(NAMES):
        emulator.insert("Account", {"Name": name, **({"Industry": "Energy"} if n % 2 else {})})
    with serve(emulator, materials=materials):
        yield emulator


@pytest.fixture
def client(org: SalesforceEmulator) -> Iterator[SalesforceClient]:
    env = org.credentials()
    settings = SalesforceSettings(
        auth="jwt",
        login_url=env["SALESFORCE_LOGIN_URL"],
        client_id=env["SALESFORCE_CLIENT_ID"],
        username=env["SALESFORCE_USERNAME"],
        private_key_file=Path(env["SALESFORCE_JWT_KEY_FILE"]),
        ca_file=Path(env["SALESFORCE_CA_FILE"]),
        timeout_seconds=5.0,
    )
    c = SalesforceClient(settings)
    yield c
    c.close()


def test_a_bulk_query_reads_every_record_page_by_page(
    org: SalesforceEmulator, client: SalesforceClient
) -> None:
    rows = list(
        client.bulk_query("SELECT Id, Name, Industry, Owner.Name FROM Account ORDER BY Name", page_size=10)
    )

    expected = sorted(org.records("Account"), key=lambda r: r["Name"])
    assert [r["Id"] for r in rows] == [r["Id"] for r in expected]
    assert [r["Name"] for r in rows] == [r["Name"] for r in expected]  # commas, quotes, new lines, accents
    assert {r["Industry"] for r in rows} == {"Energy", None}  # an empty cell is null
    assert all(r["Owner.Name"] for r in rows)  # a parent's field, flat
    results = [c for c in org.calls.calls() if c.path.endswith("/results")]
    assert len(results) == 3  # 25 rows, 10 a page


def test_count_and_a_failed_job(client: SalesforceClient) -> None:
    assert client.count("SELECT COUNT() FROM Account") == len(NAMES)
    with pytest.raises(Fatal) as failed:  # the field is checked when the job runs: the job fails
        list(client.bulk_query("SELECT Nope__c FROM Account"))
    assert failed.value.vendor_code == "Failed" and "No such column 'Nope__c'" in str(failed.value)
