"""Against the Salesforce sandbox: values no field can hold are refused at the door, naming the field,
and once the target's describe is known, each field's own length and digits are checked too."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.salesforce.seeds import BILLING_CONTRACTS

from ..conftest import Crmsync, wait_until

OPEN, FULFILLED = BILLING_CONTRACTS["ACME-2026"], BILLING_CONTRACTS["ACME-2025"]


def post(crm: Crmsync, body: object) -> httpx.Response:
    return httpx.post(
        f"{crm.base_url}/api/v1/flows/usage/records",
        json=body,
        headers={"Authorization": f"Bearer {crm.token}"},
        timeout=30,
    )


def _up(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


def test_huge_numbers_are_refused_quickly_and_the_valid_records_land(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=1)
    wait_until(lambda: _up(f"{crm.base_url}/healthz"))
    good = [{"key": f"ok-{i}", "fields": {"contract_id": OPEN, "quantity": 1}} for i in range(19)]
    for huge in ("1e5000", "1e1000000"):
        started = time.monotonic()
        r = post(crm, {"records": [*good, {"key": "bad", "fields": {"contract_id": OPEN, "quantity": huge}}]})
        assert time.monotonic() - started < 1.0
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"] == [
            {
                "loc": "records.19.fields.quantity",
                "message": f"field 'quantity': '{huge}' has more than 38 digits before the decimal point",
            }
        ]
    assert post(crm, {"records": good}).status_code == 202
    wait_until(crm.settled)
    landed = {r["Ad_Id__c"] for r in salesforce.records("Usage__c")}
    assert {f"ok-{i}" for i in range(19)} <= landed and "bad" not in landed
    assert crm.runtime.queue.stats().dead == 0


def test_the_target_fields_own_limits_apply_once_its_describe_is_known(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=0)
    wait_until(lambda: _up(f"{crm.base_url}/healthz"))
    too_long = {"key": "probe", "fields": {"contract_id": FULFILLED, "product": "X" * 300}}
    # until the describe is read (in the background) the lock rule answers 409; nothing is stored either way
    wait_until(lambda: post(crm, too_long).status_code == 422)
    r = post(crm, too_long)
    assert r.json()["error"]["details"] == [
        {
            "loc": "records.0.fields.product",
            "message": "field 'product' → Product__c: 300 characters long; Product__c holds at most 80",
        }
    ]
    assert crm.runtime.queue.stats().pending == 0
