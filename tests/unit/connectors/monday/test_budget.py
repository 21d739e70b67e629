"""Complexity pacing: a window like monday's, reserved before each request, shared through the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync.connectors.monday.budget import MARGIN, WINDOW, ComplexityPacer, MemoryBook, StoreBook
from crmsync.errors import BudgetExhausted
from crmsync.store.db import Store

START = 1_800_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(f"sqlite:///{tmp_path / 'store.db'}")
    db.upgrade()
    yield db
    db.dispose()


def pacer(
    clock: FakeClock, book: MemoryBook | StoreBook | None = None, per_minute: int = 1000
) -> ComplexityPacer:
    return ComplexityPacer(per_minute, book, clock=clock, sleep=clock.sleep)


def test_reservations_fill_the_window_then_wait_for_it_to_close(clock: FakeClock) -> None:
    p = pacer(clock)
    p.acquire(600)
    p.acquire(400)
    assert clock.now == START and p.usage().used == 1000
    p.acquire(1)
    assert clock.now == START + WINDOW + MARGIN  # slept until monday's window had closed
    assert p.usage().used == 1 and p.waited == WINDOW + MARGIN


def test_a_wait_for_the_window_is_told_second_by_second_while_a_report_is_set(clock: FakeClock) -> None:
    from crmsync.connectors.monday.connector import MondayConnector
    from crmsync.connectors.monday.settings import MondaySettings

    connector = MondayConnector("monday", settings=MondaySettings(token="t", complexity_per_minute=1000))
    p = connector.client.pacer = pacer(clock)
    told: list[float | None] = []
    connector.on_wait(told.append)
    p.penalise(2.5)  # the window stays full for 2.5 s
    p.acquire(1)
    assert told == [2.5, 1.5, 0.5, None] and clock.now == pytest.approx(START + 2.5)
    connector.on_wait(None)
    p.penalise(2.0)
    p.acquire(1)
    assert told[-1] is None and len(told) == 4  # no longer told
    assert connector.budget_name() == "monday's complexity budget"
    connector.close()


def test_a_request_dearer_than_the_budget_goes_alone_in_a_fresh_window(clock: FakeClock) -> None:
    p = pacer(clock)
    p.acquire(5000)
    assert clock.now == START
    p.acquire(10)
    assert clock.now == START + WINDOW + MARGIN


def test_settle_corrects_the_estimate(clock: FakeClock) -> None:
    p = pacer(clock)
    p.acquire(900)
    p.settle(900, 100)
    assert p.usage().used == 100
    p.acquire(800)
    assert clock.now == START


def test_monday_s_own_view_is_merged_conservatively(clock: FakeClock) -> None:
    p = pacer(clock)
    p.acquire(100)
    p.observe(left=50, reset_in=20)  # others spent the token's budget: only 50 left
    assert p.usage().used == 950
    clock.now += 10
    p.observe(left=900, reset_in=55)  # monday's window closes later than ours
    p.acquire(100)  # 950 used: it waits for the later of the two windows to close
    assert clock.now >= START + 10 + 55


def test_a_refusal_blocks_the_window_for_the_given_wait(clock: FakeClock) -> None:
    p = pacer(clock)
    p.penalise(30)
    p.acquire(1)
    assert clock.now == pytest.approx(START + 30)


def test_waiting_longer_than_allowed_raises_budget_exhausted(clock: FakeClock) -> None:
    p = ComplexityPacer(1000, clock=clock, sleep=clock.sleep, max_wait=10)
    p.acquire(1000)
    with pytest.raises(BudgetExhausted) as exc:
        p.acquire(1)
    assert exc.value.retry_after == pytest.approx(WINDOW + MARGIN)


def test_two_pacers_on_one_store_share_the_window(clock: FakeClock, store: Store) -> None:
    one = pacer(clock, StoreBook(store, "monday", 1000))
    two = pacer(clock, StoreBook(store, "monday", 1000))
    other = pacer(clock, StoreBook(store, "other-account", 1000))
    one.acquire(700)
    other.acquire(700)  # another connection has its own budget
    assert clock.now == START
    two.acquire(300)
    assert clock.now == START and two.usage().used == 1000 and one.usage().used == 1000
    two.acquire(1)
    assert clock.now == START + WINDOW + MARGIN
    assert one.usage().used == 1


def test_without_a_store_each_pacer_counts_alone(clock: FakeClock) -> None:
    one, two = pacer(clock), pacer(clock)
    one.acquire(1000)
    two.acquire(1000)
    assert clock.now == START
