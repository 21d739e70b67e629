"""W3 on a bad day: usage entries land exactly once, and promptly, while Salesforce fails often.

The mix: 10 % of data calls answer 503, 5 % answer 429 with ``Retry-After: 3``, 5 % never answer
(the write lands, the answer is withheld until the client gives up). Everything the user can set to
live with it is set as a user would: the connection's ``timeout_seconds`` and the worker's backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from crmsync.client import Client
from crmsync.errors import RetryLater
from crmsync.sandbox.salesforce import SalesforceEmulator

from ..conftest import Crmsync, wait_until
from .test_usage_billing import SEEDED, contracts

ENTRIES = 2000
#: entries per ingest request: a stream of small requests, so the worker makes many small calls
PER_REQUEST = 25
#: the target: everything landed this long after the last entry was accepted
LANDED_WITHIN = 120.0
DATA = "^/services/data"


def add_fault_mix(sf: SalesforceEmulator) -> None:
    """Rules are tried in order; each probability is of the calls the rules before it let through."""
    # each failure at least once, on the first writes
    sf.faults.add(path="/composite/sobjects/Usage__c", hang=True, count=1)
    sf.faults.add(path="/composite/sobjects/Usage__c", status=429, retry_after=3, count=1)
    sf.faults.add(path="/composite/sobjects/Usage__c", error="unavailable", count=1)
    # then the mix, on every data call (lock queries too)
    sf.faults.add(path=DATA, error="unavailable", probability=0.10)  # 10 % of all calls
    sf.faults.add(path=DATA, status=429, retry_after=3, probability=0.05 / 0.90)  # 5 %
    sf.faults.add(path=DATA, hang=True, probability=0.05 / 0.85)  # 5 %


def landed_usage(sf: SalesforceEmulator) -> dict[str, list[dict[str, object]]]:
    """Every Usage__c record the test wrote (deleted or not), by its external id."""
    out: dict[str, list[dict[str, object]]] = {}
    for record in sf.records("Usage__c"):
        key = str(record.get("Ad_Id__c"))
        if key not in SEEDED:
            out.setdefault(key, []).append(record)
    return out


@pytest.mark.slow
def test_two_thousand_entries_land_once_within_two_minutes_under_failures(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(
        workers=2,
        connection={"timeout_seconds": 3},  # a hung call is given up after 3 s
        batch_size=50,
        backoff="{initial_seconds: 0.5, factor: 2, max_seconds: 5, jitter: 0.2}",
    )
    contract = contracts(salesforce, "Activated")[0]
    add_fault_mix(salesforce)
    expected = {f"bad-day-{i:04d}": i % 7 + 1 for i in range(ENTRIES)}
    keys = sorted(expected)
    with Client(crm.base_url, crm.token) as client:
        for start in range(0, ENTRIES, PER_REQUEST):
            batch = [
                {
                    "key": key,
                    "delivery_id": f"d-{key}",
                    "fields": {"contract_id": contract, "product": "M", "quantity": expected[key]},
                }
                for key in keys[start : start + PER_REQUEST]
            ]
            for attempt in range(5):  # an application unsure of a request sends it again, same ids
                try:
                    client.submit("usage", batch)
                    break
                except RetryLater:
                    if attempt == 4:
                        raise
    last_accepted = time.monotonic()

    wait_until(lambda: len(landed_usage(salesforce)) == ENTRIES and crm.settled(), timeout=LANDED_WITHIN)
    took = time.monotonic() - last_accepted
    faults = {r.id: r.fired for r in salesforce.faults.rules()}
    calls = sum(1 for c in salesforce.calls.calls() if c.path.startswith("/services/data"))
    print(f"all {ENTRIES} entries landed {took:.1f} s after the last was accepted")
    print(f"{calls} Salesforce data calls; fault rules fired (by id): {faults}")

    landed = landed_usage(salesforce)
    assert set(landed) == set(expected)
    twice = sorted(k for k, records in landed.items() if len(records) != 1)
    assert not twice, f"written more than once: {twice[:10]}"
    assert all(not records[0].get("IsDeleted") for records in landed.values())
    assert {k: float(str(records[0]["Quantity__c"])) for k, records in landed.items()} == {
        k: float(v) for k, v in expected.items()
    }
    assert crm.runtime.queue.stats().dead == 0
    assert crm.runtime.queue.dead_letters() == []
    statuses = [c.status for c in salesforce.calls.calls() if c.path.startswith("/services/data")]
    assert statuses.count(429) >= 1 and statuses.count(503) >= 1  # the faults did happen
    assert took <= LANDED_WITHIN
