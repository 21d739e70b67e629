"""The Salesforce client takes a call of the daily budget and a request slot before every request."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import httpx
import pytest

from crmsync.connectors.salesforce.budget import MAX_SLEEP, ORG_LABEL, OWN_LABEL, SalesforceBudget
from crmsync.connectors.salesforce.client import SalesforceClient
from crmsync.connectors.salesforce.settings import SalesforceSettings
from crmsync.errors import BudgetExhausted, ConfigError, RetryLater
from crmsync.store.budgets import MemoryBudgets

from .conftest import FakeSalesforce, reply


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make_client(fake: FakeSalesforce, settings: SalesforceSettings, **changes: Any) -> SalesforceClient:
    client = SalesforceClient(dataclasses.replace(settings, **changes), transport=httpx.MockTransport(fake))
    client.budget = SalesforceBudget("crm", client.settings)
    return client


def test_crmsyncs_own_daily_budget_is_never_passed(
    fake: FakeSalesforce, settings: SalesforceSettings
) -> None:
    fake.route("GET", "/limits$", reply(200, {}))
    client = make_client(fake, settings, daily_call_budget=3)
    for _ in range(3):
        client.limits()
    with pytest.raises(BudgetExhausted) as refused:
        client.limits()
    assert len(fake.data_requests()) == 3
    assert refused.value.retry_after is not None and refused.value.retry_after > MAX_SLEEP
    assert "daily API budget of 'crm'" in str(refused.value)
    assert client.budget.refused == 1


def test_the_org_share_counts_what_salesforce_reports(
    fake: FakeSalesforce, settings: SalesforceSettings
) -> None:
    """Salesforce says 90 of 100 are used (other programs): a share of 0.95 leaves crmsync 5 calls."""
    used = [90]

    def limits(_request: httpx.Request) -> httpx.Response:
        used[0] += 1
        return reply(200, {}, usage=f"api-usage={used[0]}/100")

    fake.route("GET", "/limits$", limits)
    client = make_client(fake, settings, daily_limit_share=0.95)
    sent = 0
    with pytest.raises(BudgetExhausted):
        for _ in range(20):
            client.limits()
            sent += 1
    assert sent == 5  # 91 (the first call, before the org's limit was known) … 95 = 0.95 of 100
    assert used[0] == 95
    usage = client.budget.usage()
    assert usage is not None and (usage.used, usage.limit) == (95, 95)


def test_a_total_requests_refusal_fills_the_org_window(
    fake: FakeSalesforce, settings: SalesforceSettings
) -> None:
    fake.route("GET", "/limits$", reply(200, {}, usage="api-usage=10/1000"))
    fake.route(
        "GET",
        "/sobjects$",
        reply(
            403,
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
            usage="api-usage=1001/1000",
        ),
    )
    client = make_client(fake, settings)
    client.limits()
    with pytest.raises(BudgetExhausted):
        client.request("GET", "sobjects")
    with pytest.raises(BudgetExhausted):
        client.limits()  # not sent: the window is full until it rolls
    assert len(fake.data_requests()) == 2


def test_a_short_wait_for_the_budget_sleeps_instead_of_refusing(settings: SalesforceSettings) -> None:
    clock = Clock()
    s = dataclasses.replace(settings, daily_call_budget=2, concurrent_requests=0)
    budget = SalesforceBudget("crm", s, MemoryBudgets(), clock=clock, sleep=clock.sleep, window_seconds=4.0)
    budget.before("u")
    budget.before("u")
    budget.before("u")  # the window of 4 s (4 buckets of 1 s) frees the first bucket within 5 s
    assert clock.slept and sum(clock.slept) <= 5.0 + MAX_SLEEP
    assert [w.label for w in budget.windows()] == [OWN_LABEL]


def test_requests_in_flight_never_pass_the_limit(fake: FakeSalesforce, settings: SalesforceSettings) -> None:
    inside, most = [0], [0]
    lock = threading.Lock()

    def slow(_request: httpx.Request) -> httpx.Response:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return reply(200, {})

    fake.route("GET", "/limits$", slow)
    client = make_client(fake, settings, concurrent_requests=3)
    client.login()
    threads = [threading.Thread(target=client.limits) for _ in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(fake.data_requests()) == 12
    assert most[0] == 3
    slots = client.budget.slots()
    assert slots is not None and client.budget.book.holding(slots, time.time()) == 0  # all given back


def test_a_request_that_finds_every_slot_taken_for_too_long_is_retried_later(
    settings: SalesforceSettings,
) -> None:
    clock = Clock()
    s = dataclasses.replace(settings, concurrent_requests=1, timeout_seconds=2.0)
    budget = SalesforceBudget("crm", s, MemoryBudgets(), clock=clock, sleep=clock.sleep)
    held = budget.before("u")
    with pytest.raises(RetryLater) as late:
        budget.before("u")
    assert "concurrent_requests" in str(late.value)
    budget.after(held, None)
    assert budget.before("u").slot == held.slot


def test_a_failed_request_gives_its_slot_back(fake: FakeSalesforce, settings: SalesforceSettings) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    fake.route("GET", "/limits$", broken)
    client = make_client(fake, settings, concurrent_requests=1)
    for _ in range(3):
        with pytest.raises(RetryLater):
            client.limits()
    slots = client.budget.slots()
    assert slots is not None and client.budget.book.holding(slots, time.time()) == 0


def test_the_org_window_appears_once_the_limit_is_known(settings: SalesforceSettings) -> None:
    budget = SalesforceBudget("crm", dataclasses.replace(settings, daily_limit_share=0.5))
    assert budget.windows() == []
    from crmsync.connectors.base import ApiUsage

    budget.after(budget.before("u"), ApiUsage(used=40, limit=1000))
    (org,) = budget.windows()
    assert (org.label, org.limit) == (ORG_LABEL, 500)
    assert budget.usage() == ApiUsage(used=40, limit=500)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"daily_limit_share": 0.0}, "daily_limit_share"),
        ({"daily_call_budget": 0}, "daily_call_budget"),
        ({"concurrent_requests": -1}, "concurrent_requests"),
    ],
)
def test_budget_settings_are_checked(
    settings: SalesforceSettings, changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        dataclasses.replace(settings, **changes)
