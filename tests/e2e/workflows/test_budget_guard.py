"""Near the Salesforce daily API limit, non-urgent flows wait; urgent ones keep writing."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx

from crmsync.client import Client
from crmsync.sandbox.salesforce import SalesforceEmulator

from ..conftest import Crmsync, wait_until
from .test_usage_billing import contracts, live_usage


def burn(salesforce: SalesforceEmulator, calls: int) -> None:
    """Spend API calls as another integration of the same org would."""
    token = salesforce.new_session()
    ca = salesforce.credentials()["SALESFORCE_CA_FILE"]
    with httpx.Client(verify=ssl.create_default_context(cafile=ca)) as http:
        for _ in range(calls):
            http.get(
                f"{salesforce.base_url}/services/data/v66.0/limits",
                headers={"Authorization": f"Bearer {token}"},
            )


def test_a_non_urgent_flow_waits_past_the_guard_and_resumes_when_the_budget_recovers(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=1, urgent="false")
    contract = contracts(salesforce, "Activated")[0]
    salesforce.set_daily_limit(100)
    burn(salesforce, 95 - salesforce.api_usage)  # 95 of 100: past the 0.9 guard
    with Client(crm.base_url, crm.token) as client:
        client.upsert("usage", "second", {"contract_id": contract, "product": "S", "quantity": 1})
        wait_until(lambda: crm.runtime.queue.stats().retrying == 1)
        log = crm.runtime.ledger.history(flow="usage", key="second")
        assert log and "not urgent" in log[0]["message"]
        assert "second" not in live_usage(salesforce)
        salesforce.set_daily_limit(100_000)
    wait_until(crm.settled)
    assert "second" in live_usage(salesforce)


def test_an_urgent_flow_keeps_writing_past_the_guard(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=1)
    contract = contracts(salesforce, "Activated")[0]
    salesforce.set_daily_limit(100)
    burn(salesforce, 95 - salesforce.api_usage)
    with Client(crm.base_url, crm.token) as client:
        client.upsert("usage", "second", {"contract_id": contract, "product": "S", "quantity": 1})
        wait_until(crm.settled)
    assert "second" in live_usage(salesforce)
