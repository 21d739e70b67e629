"""W3 end to end: an application's usage entries land in the Salesforce sandbox exactly once."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from crmsync.client import Client
from crmsync.errors import LockedRecord
from crmsync.sandbox.salesforce import SalesforceEmulator

from ..conftest import Crmsync, wait_until

#: the Usage__c records of the ``billing`` seed
SEEDED = frozenset({"billing-ad-1", "billing-ad-2", "billing-ad-3"})


def contracts(sf: SalesforceEmulator, status: str) -> list[str]:
    return [c["Id"] for c in sf.records("Contract") if c.get("Status") == status]


def live_usage(sf: SalesforceEmulator) -> dict[str, dict[str, Any]]:
    """Usage__c records not deleted, by Ad_Id__c, leaving out those the seed made (``seed-…``)."""
    rows = [r for r in sf.records("Usage__c") if not r.get("IsDeleted")]
    by_key = {r["Ad_Id__c"]: r for r in rows}
    assert len(by_key) == len(rows), "two Usage__c records share an Ad_Id__c"
    return {k: v for k, v in by_key.items() if k not in SEEDED}


def write_calls(sf: SalesforceEmulator) -> dict[str, int]:
    calls = sf.calls.calls()
    return {
        "upsert": sum(
            1 for c in calls if c.method == "PATCH" and "/composite/sobjects/Usage__c/Ad_Id__c" in c.path
        ),
        "delete": sum(1 for c in calls if c.method == "DELETE" and c.path.endswith("/composite/sobjects")),
        "single": sum(
            1
            for c in calls
            if c.method != "GET" and "/sobjects/Usage__c" in c.path and "/composite/" not in c.path
        ),
    }


def test_a_thousand_entries_with_corrections_and_deletions_land_once(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    # The web app takes the stream first; the workers start after it (crmsync serve + crmsync worker).
    crm = crmsync_factory(workers=0)
    open_contracts = contracts(salesforce, "Activated")
    assert open_contracts, "the billing seed has activated contracts"
    rnd = random.Random(3)
    expected: dict[str, dict[str, Any] | None] = {}
    with Client(crm.base_url, crm.token) as client:
        batch: list[Any] = []
        for i in range(1000):
            key = f"ad-{i:04d}"
            fields = {"contract_id": rnd.choice(open_contracts), "product": rnd.choice("SMLX"), "quantity": 1}
            batch.append({"key": key, "fields": fields})
            expected[key] = fields
            if len(batch) == 100:
                assert client.submit("usage", batch) == {"accepted": 100, "duplicates": 0}
                batch = []
        for key in rnd.sample(sorted(expected), 150):  # corrections
            fields = {"quantity": rnd.randint(2, 9)}
            client.upsert("usage", key, fields)
            expected[key] = {**(expected[key] or {}), **fields}
        for key in rnd.sample(sorted(expected), 100):  # deletions
            client.delete("usage", key)
            expected[key] = None
    assert salesforce.calls.count(path_contains="/composite/sobjects/Usage__c") == 0

    worker = crmsync_factory(workers=1, web=False)
    wait_until(worker.settled, timeout=60)

    landed = live_usage(salesforce)
    want = {k: v for k, v in expected.items() if v is not None}
    assert set(landed) == set(want)
    for key, fields in want.items():
        assert float(landed[key]["Quantity__c"]) == fields["quantity"]
        assert landed[key]["Contract__c"][:15] == fields["contract_id"][:15]
    calls = write_calls(salesforce)
    # coalescing folds a record's corrections and deletion into one net write
    assert calls["upsert"] <= math.ceil(len(want) / 200)
    assert calls["delete"] == 0  # every deleted entry was deleted before it was ever written
    assert calls["single"] == 0
    assert worker.runtime.queue.stats().dead == 0


def test_streamed_entries_land_and_a_locked_contract_refuses_corrections(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=2)
    contract = contracts(salesforce, "Activated")[0]
    with Client(crm.base_url, crm.token) as client:
        for i in range(50):
            client.upsert("usage", f"s-{i}", {"contract_id": contract, "product": "S", "quantity": 1})
        wait_until(crm.settled)
        assert len(live_usage(salesforce)) == 50
        client.upsert("usage", "s-1", {"quantity": 4})
        client.delete("usage", "s-2")
        wait_until(crm.settled)
        landed = live_usage(salesforce)
        assert float(landed["s-1"]["Quantity__c"]) == 4 and "s-2" not in landed

        salesforce.update("Contract", contract, {"Status": "Fulfilled"})
        crm.runtime.locks.forget()
        before = salesforce.calls.count(path_contains="/composite/sobjects")
        queued_before = crm.runtime.queue.stats()
        with pytest.raises(LockedRecord, match="fulfilled"):
            client.upsert("usage", "s-3", {"quantity": 7})
        with pytest.raises(LockedRecord):
            client.delete("usage", "s-4")  # the contract is found from what was last synced
        with pytest.raises(LockedRecord):
            client.upsert("usage", "s-new", {"contract_id": contract, "product": "S", "quantity": 1})
    assert crm.runtime.queue.stats() == queued_before
    assert salesforce.calls.count(path_contains="/composite/sobjects") == before
    after = live_usage(salesforce)
    assert float(after["s-3"]["Quantity__c"]) == 1 and "s-4" in after and "s-new" not in after


def test_ingest_keeps_accepting_while_salesforce_is_down_and_everything_lands_after(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=2)
    contract = contracts(salesforce, "Activated")[0]
    rule = salesforce.faults.add(path="^/services/(data|oauth2)", error="unavailable")
    statuses = []
    with httpx.Client(base_url=crm.base_url, headers={"Authorization": f"Bearer {crm.token}"}) as http:
        for i in range(200):
            body = {
                "key": f"o-{i}",
                "fields": {"contract_id": contract, "product": "M", "quantity": i % 5 + 1},
            }
            statuses.append(http.post("/api/v1/flows/usage/records", json=body).status_code)
        assert set(statuses) == {202}
        wait_until(lambda: crm.runtime.queue.stats().retrying > 0)
        assert live_usage(salesforce) == {}
        salesforce.faults.remove(rule.id)
    wait_until(crm.settled, timeout=60)
    landed = live_usage(salesforce)
    assert len(landed) == 200
    assert all(float(landed[f"o-{i}"]["Quantity__c"]) == i % 5 + 1 for i in range(200))


def test_a_permanently_invalid_entry_becomes_a_dead_letter_and_does_not_hold_up_others(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=1)
    contract = contracts(salesforce, "Activated")[0]
    with Client(crm.base_url, crm.token) as client:
        # a product name longer than the field allows: Salesforce refuses it (STRING_TOO_LONG)
        client.upsert("usage", "bad", {"contract_id": contract, "product": "X" * 300, "quantity": 1})
        for i in range(20):
            client.upsert("usage", f"g-{i}", {"contract_id": contract, "product": "S", "quantity": 1})
    wait_until(crm.settled)
    landed = live_usage(salesforce)
    assert set(landed) == {f"g-{i}" for i in range(20)}
    letters = crm.runtime.queue.dead_letters()
    assert len(letters) == 1 and letters[0].record_key == "bad"
    assert "STRING_TOO_LONG" in str(letters[0].error)
