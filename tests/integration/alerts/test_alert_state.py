"""The alert state on SQLite, PostgreSQL and MariaDB: once per problem, reminders, one notice,
and exactly one notification when several processes raise the same problem at the same time."""

from __future__ import annotations

import threading
from datetime import timedelta

from crmsync.alerts import Alerter
from crmsync.alerts.testing import ManualClock, Outbox
from crmsync.store import Store


def test_once_then_a_reminder_then_one_notice(store: Store) -> None:
    clock, outbox = ManualClock(), Outbox()
    alerter = Alerter(store, [], clock=clock, notify=outbox, reminder_after=timedelta(minutes=30))
    assert [alerter.problem("auth:sf", "cannot log in", "401") for _ in range(3)] == [True, False, False]
    clock.advance(minutes=30)
    assert alerter.problem("auth:sf", "cannot log in", "401")
    assert alerter.clear("auth:sf")
    assert not alerter.clear("auth:sf")
    assert outbox.notices() == ["problem", "reminder", "resolved"]
    assert alerter.open_problems() == []
    assert alerter.problem("auth:sf", "cannot log in", "again")
    [problem] = alerter.open_problems()
    assert (problem.count, problem.opened_at, problem.last_sent_at) == (1, clock.now, clock.now)


def test_two_alerters_racing_on_one_key_send_once(store: Store) -> None:
    clock, outbox = ManualClock(), Outbox()
    alerters = [Alerter(store, [], clock=clock, notify=outbox) for _ in range(2)]
    start = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def raise_it(alerter: Alerter) -> None:
        start.wait()
        for _ in range(3):
            sent = alerter.problem("queue_lag", "behind", "x")
            with lock:
                results.append(sent)

    threads = [threading.Thread(target=raise_it, args=(alerters[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1 and len(results) == 24
    assert outbox.notices() == ["problem"]
    assert alerters[0].open_problems()[0].count == 24

    cleared: list[bool] = []
    start = threading.Barrier(4)

    def clear_it(alerter: Alerter) -> None:
        start.wait()
        sent = alerter.clear("queue_lag")
        with lock:
            cleared.append(sent)

    threads = [threading.Thread(target=clear_it, args=(alerters[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(cleared) == [False, False, False, True]
    assert outbox.notices() == ["problem", "resolved"]
