from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from crmsync.alerts import (
    Alerter,
    auth_failure,
    auth_ok,
    check_dead_letters,
    check_queue_lag,
    dead_letter_alert,
    dead_letters_cleared,
    webhook_ok,
    webhook_problem,
)
from crmsync.alerts.state import get
from crmsync.alerts.testing import ManualClock, Outbox
from crmsync.config.models import AlertsConfig
from crmsync.engine.queue import QueueStats
from crmsync.errors import Fatal, FixTheData
from crmsync.store import Store
from crmsync.store.schema import dead_letters


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("alerts") / "template.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    store.dispose()
    return path


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "crmsync.db"
    path.write_bytes(template.read_bytes())
    s = Store(f"sqlite:///{path}")
    yield s
    s.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def alerter(store: Store, clock: ManualClock, outbox: Outbox) -> Alerter:
    return Alerter(store, [], clock=clock, notify=outbox, retry_after=timedelta(0))


def test_a_problem_alerts_once_however_often_it_is_raised(alerter: Alerter, outbox: Outbox) -> None:
    results = [alerter.problem("auth:sf", "cannot log in", f"attempt {i}") for i in range(5)]
    assert results == [True, False, False, False, False]
    assert outbox.notices() == ["problem"]
    assert outbox.sent[0].title == "[crmsync] cannot log in"
    assert outbox.sent[0].body == "attempt 0"
    [problem] = alerter.open_problems()
    assert (problem.key, problem.count, problem.body) == ("auth:sf", 5, "attempt 4")
    assert problem.last_sent_at == problem.opened_at


def test_a_reminder_after_the_interval_while_it_persists(
    alerter: Alerter, outbox: Outbox, clock: ManualClock
) -> None:
    assert alerter.problem("queue_lag", "behind", "x")
    clock.advance(minutes=59)
    assert not alerter.problem("queue_lag", "behind", "x")
    clock.advance(minutes=1)
    assert alerter.problem("queue_lag", "behind", "still x")
    assert not alerter.problem("queue_lag", "behind", "x")
    clock.advance(minutes=30)
    assert not alerter.problem("queue_lag", "behind", "x")
    clock.advance(minutes=30)
    assert alerter.problem("queue_lag", "behind", "x")
    assert outbox.notices() == ["problem", "reminder", "reminder"]
    reminder = outbox.sent[1]
    assert reminder.title == "[crmsync] Still: behind"
    assert reminder.body.startswith("still x\n\n(open since 2024-06-01 12:00 UTC, 60 min; seen 3 times)")


def test_the_reminder_interval_is_configurable(store: Store, clock: ManualClock, outbox: Outbox) -> None:
    alerter = Alerter.from_config(store, AlertsConfig(reminder_minutes=5), clock=clock, notify=outbox)
    alerter.problem("k", "t", "b")
    clock.advance(minutes=5)
    alerter.problem("k", "t", "b")
    assert outbox.notices() == ["problem", "reminder"]


def test_clear_sends_one_notice_only_if_the_problem_was_open(
    alerter: Alerter, outbox: Outbox, clock: ManualClock
) -> None:
    assert not alerter.clear("auth:sf")  # never opened
    alerter.problem("auth:sf", "cannot log in", "401")
    clock.advance(minutes=90)
    assert alerter.clear("auth:sf", "logs in again")
    assert not alerter.clear("auth:sf", "logs in again")
    assert outbox.notices() == ["problem", "resolved"]
    resolved = outbox.sent[1]
    assert resolved.title == "[crmsync] Resolved: cannot log in"
    assert resolved.body == "logs in again\n\nIt lasted 90 min (since 2024-06-01 12:00 UTC)."
    assert alerter.open_problems() == []
    row = get(alerter.store, "auth:sf")
    assert row is not None and row.cleared_at == clock.now


def test_a_problem_that_comes_back_after_clearing_alerts_again(alerter: Alerter, outbox: Outbox) -> None:
    alerter.problem("k", "t", "first")
    alerter.clear("k")
    assert alerter.problem("k", "t", "second")
    assert outbox.notices() == ["problem", "resolved", "problem"]
    [problem] = alerter.open_problems()
    assert problem.count == 1


def test_a_failed_delivery_is_retried_by_the_next_call(alerter: Alerter, outbox: Outbox) -> None:
    outbox.fail = True
    assert not alerter.problem("k", "t", "b")
    [problem] = alerter.open_problems()
    assert problem.last_sent_at is None  # the claim was given back
    outbox.fail = False
    assert alerter.problem("k", "t", "b")
    assert not alerter.problem("k", "t", "b")
    assert outbox.notices() == ["problem"]
    assert outbox.attempts == 2


def test_failed_deliveries_are_not_retried_before_retry_after(
    store: Store, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = Outbox(fail=True)
    alerter = Alerter(store, [], clock=clock, notify=outbox, retry_after=timedelta(minutes=1))
    ticks = iter([100.0, 130.0, 161.0])
    monkeypatch.setattr("crmsync.alerts.alerter.time.monotonic", lambda: next(ticks))
    alerter.problem("k", "t", "b")  # fails at t=100
    alerter.problem("k", "t", "b")  # t=130: paused, not even tried
    assert outbox.attempts == 1
    outbox.fail = False
    assert alerter.problem("k", "t", "b")  # t=161: tried again
    assert outbox.attempts == 2


def test_a_failed_resolved_notice_keeps_the_problem_open_until_it_goes_out(
    alerter: Alerter, outbox: Outbox
) -> None:
    alerter.problem("k", "t", "b")
    outbox.fail = True
    assert not alerter.clear("k")
    assert [p.key for p in alerter.open_problems()] == ["k"]
    outbox.fail = False
    assert alerter.clear("k")
    assert outbox.notices() == ["problem", "resolved"]


def test_a_notify_that_raises_counts_as_a_failed_delivery(store: Store, clock: ManualClock) -> None:
    def broken(title: str, body: str, notice: str) -> bool:
        raise RuntimeError("channel down")

    alerter = Alerter(store, [], clock=clock, notify=broken)
    assert not alerter.problem("k", "t", "b")
    assert alerter.open_problems()[0].last_sent_at is None


def test_without_destinations_problems_are_recorded_and_nobody_is_told(store: Store) -> None:
    alerter = Alerter(store, [])
    assert not alerter.enabled
    assert not alerter.problem("k", "t", "b")
    assert [p.key for p in alerter.open_problems()] == ["k"]
    assert not alerter.clear("k")  # nobody was told, so it closes quietly
    assert alerter.open_problems() == []


def test_a_problem_cleared_before_anyone_was_told_closes_quietly(alerter: Alerter, outbox: Outbox) -> None:
    outbox.fail = True
    alerter.problem("k", "t", "b")
    outbox.fail = False
    assert not alerter.clear("k")
    assert outbox.sent == [] and alerter.open_problems() == []


def test_two_alerters_on_one_store_alert_once(store: Store, clock: ManualClock, outbox: Outbox) -> None:
    first = Alerter(store, [], clock=clock, notify=outbox)
    second = Alerter(store, [], clock=clock, notify=outbox)
    assert first.problem("k", "t", "b")
    assert not second.problem("k", "t", "b")
    clock.advance(hours=1)
    assert second.problem("k", "t", "b")
    assert not first.problem("k", "t", "b")
    assert first.clear("k")
    assert not second.clear("k")
    assert outbox.notices() == ["problem", "reminder", "resolved"]


def test_keys_are_bounded() -> None:
    with pytest.raises(ValueError, match="longer than 200"):
        Alerter(Store("sqlite://"), []).problem("k" * 201, "t", "b")


# -- the checks ---------------------------------------------------------------------------------


def _stats(age: float | None) -> QueueStats:
    return QueueStats(pending=7, leased=1, dead=0, retrying=2, oldest_pending_age=age)


def test_queue_lag_alerts_over_the_threshold_and_clears_when_caught_up(
    alerter: Alerter, outbox: Outbox
) -> None:
    assert not check_queue_lag(alerter, _stats(None), 300)
    assert not check_queue_lag(alerter, _stats(300), 300)
    assert check_queue_lag(alerter, _stats(301), 300)
    assert not check_queue_lag(alerter, _stats(900), 300)
    assert check_queue_lag(alerter, _stats(12), 300)
    assert not check_queue_lag(alerter, _stats(None), 300)
    assert outbox.notices() == ["problem", "resolved"]
    assert "waits for 301 s (threshold 300 s); 7 pending, 2 of them retrying" in outbox.sent[0].body


def test_many_dead_letters_of_one_flow_are_one_alert(alerter: Alerter, outbox: Outbox) -> None:
    error = FixTheData("REQUIRED_FIELD_MISSING: Name", object_name="Lead", record="r1")
    assert dead_letter_alert(alerter, "leads", "r1", error)
    for i in range(2, 20):
        assert not dead_letter_alert(alerter, "leads", f"r{i}", {"kind": "FixTheData", "message": "bad"})
    assert dead_letter_alert(alerter, "usage", "u1", "refused")  # another flow: another problem
    assert [s.title for s in outbox.sent] == [
        "[crmsync] dead letters in flow leads",
        "[crmsync] dead letters in flow usage",
    ]
    assert (
        "Record r1 of flow leads failed for good: FixTheData: REQUIRED_FIELD_MISSING" in outbox.sent[0].body
    )
    assert alerter.open_problems()[0].body.startswith(
        "Record r19 of flow leads failed for good: FixTheData: bad"
    )
    assert dead_letters_cleared(alerter, "leads")
    assert outbox.notices() == ["problem", "problem", "resolved"]


def _dead_letter(store: Store, flow: str, *, discarded: bool) -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    with store.begin() as conn:
        conn.execute(
            sa.insert(dead_letters).values(
                change_ids=[1],
                source="app",
                flow=flow,
                record_key="r",
                operation="upsert",
                payload={},
                error={"message": "bad"},
                attempts=1,
                created_at=now,
                discarded_at=now if discarded else None,
            )
        )


def test_check_dead_letters_clears_flows_whose_letters_are_all_handled(
    alerter: Alerter, outbox: Outbox, store: Store
) -> None:
    assert not check_dead_letters(alerter)  # nothing open: nothing to look at
    _dead_letter(store, "leads", discarded=True)
    _dead_letter(store, "usage", discarded=False)
    dead_letter_alert(alerter, "leads", "r", "bad")
    dead_letter_alert(alerter, "usage", "r", "bad")
    assert check_dead_letters(alerter)
    assert [p.key for p in alerter.open_problems()] == ["dead_letters:usage"]
    assert outbox.sent[-1].title == "[crmsync] Resolved: dead letters in flow leads"


def test_auth_and_webhook_problems(alerter: Alerter, outbox: Outbox) -> None:
    assert auth_failure(alerter, "sf", Fatal("invalid_grant", vendor_code="INVALID_LOGIN"))
    assert not auth_failure(alerter, "sf", Fatal("invalid_grant"))
    assert webhook_problem(alerter, "board", "3 deliveries refused: bad signature")
    assert not auth_ok(alerter, "board")
    assert auth_ok(alerter, "sf")
    assert webhook_ok(alerter, "board")
    assert [s.title for s in outbox.sent] == [
        "[crmsync] cannot log in to sf",
        "[crmsync] webhooks of board are failing",
        "[crmsync] Resolved: cannot log in to sf",
        "[crmsync] Resolved: webhooks of board are failing",
    ]
    assert "Fatal: invalid_grant [INVALID_LOGIN]" in outbox.sent[0].body


def test_urls_may_be_secret_strings(store: Store) -> None:
    alerter = Alerter(store, [SecretStr("json://127.0.0.1:9/hook")])
    assert alerter.enabled
    assert repr(alerter) == "Alerter(['json://127.0.0.1:9/********'])"
