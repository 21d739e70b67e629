"""A backfill's export of fields read through a polymorphic relationship: the poller's TYPEOF, on
REST whatever the size (Bulk API 2.0 refuses TYPEOF), every requested field in each record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crmsync.connectors.salesforce.export import BULK_THRESHOLD, SalesforceExports

DESCRIBES: dict[str, list[dict[str, Any]]] = {
    "Task": [
        {"name": "Subject"},
        {
            "name": "WhatId",
            "relationshipName": "What",
            "polymorphicForeignKey": True,
            "referenceTo": ["Account", "Opportunity"],
        },
    ],
    "Opportunity": [
        {"name": "Name"}, {"name": "Amount"}, {"name": "StageName"},
        {"name": "AccountId", "relationshipName": "Account", "referenceTo": ["Account"]},
    ],
    "Account": [{"name": "Name"}],
}  # fmt: skip

ROWS = [
    {
        "attributes": {"type": "Task"},
        "Id": "00T000000000001AAA",
        "Subject": "[Delivery] set-up",
        "What": {
            "attributes": {"type": "Opportunity"},
            "Name": "Stark stores",
            "Amount": 22000.0,
            "StageName": "Needs Analysis",
            "Account": {"attributes": {"type": "Account"}, "Name": "Stark Retail"},
        },
        "SystemModstamp": "2026-03-01T10:00:00.000+0000",
    },
    {
        "attributes": {"type": "Task"},
        "Id": "00T000000000002AAA",
        "Subject": "[Delivery] audit",
        "What": {"attributes": {"type": "Account"}, "Name": "Stark Retail"},
        "SystemModstamp": "2026-03-01T10:00:00.000+0000",
    },
]


class FakeClient:
    def __init__(self, count: int) -> None:
        self.counted = count
        self.soql: list[str] = []
        self.described: list[str] = []

    def count(self, soql: str) -> int:
        return self.counted

    def describe(self, object_name: str) -> dict[str, Any]:
        self.described.append(object_name)
        return {"fields": DESCRIBES[object_name]}

    def query_iter(self, soql: str) -> Iterator[dict[str, Any]]:
        self.soql.append(soql)
        yield from ROWS

    def bulk_query(self, soql: str) -> Iterator[dict[str, Any]]:
        raise AssertionError(f"Bulk API 2.0 refuses TYPEOF: {soql}")


class FakeSalesforce(SalesforceExports):
    def __init__(self, count: int) -> None:
        self.client = FakeClient(count)  # type: ignore[assignment]


FIELDS = ["Id", "Subject", "What.Name", "What.StageName", "What.Amount", "What.Account.Name"]


def test_fields_through_what_are_read_by_the_poller_s_typeof_on_rest_at_any_size() -> None:
    sf = FakeSalesforce(BULK_THRESHOLD * 3)
    records = list(sf.export("Task", FIELDS, order_by="Id"))
    assert sf.client.soql == [  # type: ignore[attr-defined]
        "SELECT Id, Subject, SystemModstamp, TYPEOF What WHEN Account THEN Name "
        "WHEN Opportunity THEN Name, StageName, Amount, Account.Name ELSE Name END FROM Task ORDER BY Id"
    ]
    opportunity, account = ({k: r.fields.get(k) for k in FIELDS[2:]} for r in records)
    assert opportunity == {
        "What.Name": "Stark stores",
        "What.StageName": "Needs Analysis",
        "What.Amount": 22000.0,
        "What.Account.Name": "Stark Retail",
    }
    assert account == dict.fromkeys(FIELDS[2:]) | {"What.Name": "Stark Retail"}  # no stage, amount, parent
    assert all(set(FIELDS) <= set(r.fields) for r in records)  # each field there, empty or not
