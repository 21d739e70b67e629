"""W2 (monday.com leads ⇄ Salesforce) while Salesforce commits some writes late: 2,000 edits in
Salesforce, some visible to queries 30 s late and some 4 minutes late, all reach the board."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync.connectors.polling import PollResult
from crmsync.connectors.salesforce.poller import SalesforcePoller
from crmsync.engine.poller import QueueSink
from crmsync.engine.worker import Worker
from crmsync.sandbox.salesforce import SalesforceEmulator

from ..conftest import wait_until
from .test_monday_salesforce import W2, start_w2

ITEMS = ("Jane Cooper", "Wade Warren", "Esther Howard")
EDITS = 2000
PER_TICK = 20
TICK_SECONDS = 5


@pytest.fixture
def w2_by_hand(tmp_path: Path, salesforce: SalesforceEmulator) -> Iterator[W2]:
    yield from start_w2(tmp_path, salesforce, workers=0)


def test_late_salesforce_commits_reach_the_board(w2_by_hand: W2) -> None:
    w2, sf = w2_by_hand, w2_by_hand.sf
    worker = Worker(w2.runtime, owner="test", batch_size=50)
    [targets] = w2.runtime.poll_targets().values()
    poller = SalesforcePoller(
        w2.runtime.connector("salesforce"),  # type: ignore[arg-type]
        QueueSink(w2.runtime.queue),
        w2.runtime.store,
        targets,
        clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(seconds=sf.clock_offset),
        lookback=dt.timedelta(minutes=5),  # the connection's defaults
        sweep_every=dt.timedelta(minutes=1),
    )
    results: list[PollResult] = []

    def sync() -> None:
        """What the poller and the workers would do, until nothing is left."""
        assert w2.monday.dispatcher.wait_idle(10)
        results.append(poller.poll_once())
        while worker.run_once():
            assert w2.monday.dispatcher.wait_idle(10)

    sync()  # the watermark starts now
    for name in ITEMS:
        w2.monday.ui_change_column(w2.item(name)["id"], "status", "Qualified")
    wait_until(lambda: w2.runtime.queue.stats().pending >= len(ITEMS))
    sync()
    leads = {name: w2.item(name)["columns"]["text_mkr1lead"] for name in ITEMS}
    assert all(leads.values())

    def quiet(seconds: int) -> None:
        for _ in range(seconds // TICK_SECONDS):
            sf.advance_clock(TICK_SECONDS)
            sync()

    # a stream of edits, every 50th visible 4 minutes late and every 7th of the others 30 s late
    sf.late_commits(240, object_name="Lead", every=50)
    sf.late_commits(30, object_name="Lead", every=7)
    names = list(ITEMS)
    last: dict[str, str] = {}
    for edit in range(EDITS - len(ITEMS)):
        name = names[edit % len(names)]
        last[name] = f"Company {edit}"
        sf.update("Lead", leads[name], {"Company": last[name]})
        if edit % PER_TICK == PER_TICK - 1:
            sf.advance_clock(TICK_SECONDS)
            sync()
    quiet(300)
    # each lead's last edit: the first visible 4 minutes late, the second 30 s late, the third on
    # time; later rows move the watermark past the first two, which only the sweep can see
    sf.clear_late_commits()
    for name, delay in zip(ITEMS, (240, 30, None), strict=True):
        if delay is not None:
            sf.late_commits(delay, object_name="Lead", count=1)
        last[name] = f"Company {name} final"
        sf.update("Lead", leads[name], {"Company": last[name]})
        sf.advance_clock(TICK_SECONDS)
        sync()
    quiet(360)

    assert {name: (sf.get("Lead", leads[name]) or {}).get("Company") for name in ITEMS} == last
    assert {name: w2.item(name)["columns"].get("text") for name in ITEMS} == last
    assert sum(r.late for r in results) >= 2  # found by the sweep, not by the fast polls
    assert not any(r.skipped for r in results)
