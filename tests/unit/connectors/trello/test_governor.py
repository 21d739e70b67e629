"""The rate governor with a fake clock: a sliding window per budget, headers and 429s merged in."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from crmsync.connectors.trello.governor import (
    Budget,
    BudgetKind,
    MemorySlots,
    RateGovernor,
    StoreSlots,
    budget_name,
)
from crmsync.store.db import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def governor(clock: Clock, book: MemorySlots | StoreSlots | None = None, token: int = 100) -> RateGovernor:
    budgets: dict[BudgetKind, Budget] = {
        "token": Budget(budget_name("token", "k", "t"), "token", token, 10.5),
        "key": Budget(budget_name("key", "k"), "key", 300, 10.5),
        "member": Budget(budget_name("member", "k", "t"), "member", 100, 900.5),
    }
    return RateGovernor(budgets, book, clock=clock, sleep=clock.sleep, jitter=0.0)


@pytest.fixture(params=["memory", "store"])
def book(request: pytest.FixtureRequest, tmp_path: Path) -> MemorySlots | StoreSlots:
    if request.param == "memory":
        return MemorySlots()
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    return StoreSlots(store)


def test_a_full_window_waits_until_its_oldest_request_is_a_window_old(book: MemorySlots | StoreSlots) -> None:
    clock = Clock()
    gov = governor(clock, book)
    start = clock.now
    for _ in range(100):
        gov.acquire("/boards/b")
    assert clock.slept == []
    gov.acquire("/boards/b")
    assert clock.now == pytest.approx(start + 10.5, abs=0.01)
    assert gov.usage().used == 1  # the first 100 left the window as the 101st went


def test_the_window_slides(book: MemorySlots | StoreSlots) -> None:
    clock = Clock()
    gov = governor(clock, book)
    for _ in range(50):
        gov.acquire("/cards/c")
    clock.now += 5
    for _ in range(50):
        gov.acquire("/cards/c")
    clock.now += 5.6  # the first 50 are out of the window, the next 50 not
    for _ in range(50):
        gov.acquire("/cards/c")
    assert clock.slept == []
    gov.acquire("/cards/c")
    assert clock.slept and sum(clock.slept) == pytest.approx(5.0 - 0.1, abs=0.01)


def test_every_window_of_a_busy_run_holds_at_most_the_limit_and_at_least_nine_tenths(
    book: MemorySlots | StoreSlots,
) -> None:
    clock = Clock()
    gov = governor(clock, book)
    sent: list[float] = []
    for _ in range(400):
        gov.acquire("/boards/b")
        sent.append(clock.now)
        clock.now += 0.01  # each request takes 10 ms
    for first in sent:
        assert sum(1 for s in sent if first <= s < first + 10.0) <= 100
    rate = (len(sent) - 100) / (sent[-1] - sent[0])  # after the first window's burst
    assert rate / 10.0 >= 0.9


def test_the_key_is_shared_by_its_tokens() -> None:
    clock = Clock()
    book = MemorySlots()
    key = Budget(budget_name("key", "k"), "key", 3, 10.5)
    one = RateGovernor(
        {"token": Budget("t1", "token", 100, 10.5), "key": key}, book, clock=clock, sleep=clock.sleep
    )
    two = RateGovernor(
        {"token": Budget("t2", "token", 100, 10.5), "key": key}, book, clock=clock, sleep=clock.sleep
    )
    one.acquire("/x")
    two.acquire("/x")
    one.acquire("/x")
    assert clock.slept == []
    two.acquire("/x")
    assert clock.slept == [pytest.approx(10.5)]


def test_members_routes_also_spend_the_member_budget() -> None:
    clock = Clock()
    gov = governor(clock)
    assert gov.kinds_for("/members/me") == ["token", "key", "member"]
    assert gov.kinds_for("/boards/b/members") == ["token", "key"]


def test_requests_trello_counts_but_we_did_not_fill_the_window(book: MemorySlots | StoreSlots) -> None:
    clock = Clock()
    gov = governor(clock, book)
    gov.acquire("/boards/b")
    # another program used 59 requests of the token: Trello has 60 counted, 40 left
    gov.observe({"x-rate-limit-api-token-remaining": "40", "x-rate-limit-api-token-max": "100"})
    assert gov.usage().used == 60
    for _ in range(40):
        gov.acquire("/boards/b")
    assert clock.slept == []
    gov.acquire("/boards/b")
    assert clock.slept


def test_a_header_within_our_own_count_changes_nothing(book: MemorySlots | StoreSlots) -> None:
    clock = Clock()
    gov = governor(clock, book)
    for _ in range(10):
        gov.acquire("/boards/b")
    gov.observe({"x-rate-limit-api-token-remaining": "95", "x-rate-limit-api-key-remaining": "299"})
    assert gov.usage().used == 10


def test_a_429_waits_for_the_next_window(book: MemorySlots | StoreSlots) -> None:
    clock = Clock()
    gov = governor(clock, book)
    gov.acquire("/boards/b")
    blocked_at = clock.now
    assert gov.block(["token"]) == pytest.approx(10.5)
    gov.acquire("/boards/b")
    assert clock.now == pytest.approx(blocked_at + 10.5, abs=0.01)


def test_threads_sharing_a_book_never_exceed_the_limit() -> None:
    lock = threading.Lock()
    clock = Clock()

    def sleep(seconds: float) -> None:
        with lock:
            clock.now += seconds

    book = MemorySlots()
    budgets: dict[BudgetKind, Budget] = {
        "token": Budget("t", "token", 20, 10.0),
        "key": Budget("k", "key", 300, 10.0),
    }
    sent: list[float] = []

    def work() -> None:
        gov = RateGovernor(budgets, book, clock=clock, sleep=sleep)
        for _ in range(15):
            gov.acquire("/x")
            with lock:
                sent.append(clock.now)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == 60
    for first in sent:
        assert sum(1 for s in sent if first <= s < first + 10.0) <= 20


def test_a_slot_is_stamped_when_it_is_taken_not_when_it_was_asked_for(book: MemorySlots | StoreSlots) -> None:
    clock = Clock()
    gov = governor(clock, book, token=2)
    asked = clock.now

    def late() -> float:  # the store's lock was busy: the slot is taken half a second after asking
        clock.now = asked + 0.5
        return clock.now

    budgets = [gov.budgets["token"]]
    assert book.take(budgets, late) == 0.0
    assert book.take(budgets, late) == 0.0
    clock.now = asked + 10.5 + 0.1  # a span after asking, but not a span after the slots were taken
    assert book.take(budgets, clock.now) == pytest.approx(0.4, abs=0.01)
    assert book.used(budgets[0], clock.now) == 2


def test_a_request_answered_after_the_margin_holds_its_slot_from_its_answer(
    book: MemorySlots | StoreSlots,
) -> None:
    clock = Clock()
    budgets: dict[BudgetKind, Budget] = {"token": Budget(budget_name("token", "k", "t"), "token", 1, 10.5)}
    gov = RateGovernor(budgets, book, clock=clock, sleep=clock.sleep, jitter=0.0, slack=0.5)
    taken = gov.acquire("/boards/b")
    clock.now += 0.2
    gov.answered("/boards/b", taken)  # answered within the margin: counted from when it was taken
    assert book.used(budgets["token"], taken + 10.5) == 0
    clock.now = taken + 10.5
    late = gov.acquire("/boards/b")
    assert late == pytest.approx(taken + 10.5)
    clock.now = late + 2.0  # the request waited, or Trello was slow: it may have counted it as late as now
    gov.answered("/boards/b", late)
    clock.now = late + 10.5  # a span after it was taken, but not after it was answered
    assert book.take([budgets["token"]], clock.now) == pytest.approx(2.0, abs=0.01)
    gov.acquire("/boards/b")
    assert clock.now == pytest.approx(late + 12.5, abs=0.01)
