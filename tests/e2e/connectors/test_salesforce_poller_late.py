"""Rows that commit late (their SystemModstamp behind rows already read) are caught by the lookback
sweep, on the org's clock: 2,000 edits, some visible 30 s late and some 4 minutes late."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync.connectors.polling import PollResult, PollTarget
from crmsync.sandbox.salesforce import SalesforceEmulator

from .test_salesforce_poller import CONNECTION, Rig

ACCOUNTS = PollTarget("accounts", CONNECTION, "Account", ("Name",))
RECORDS = 1000
EDITS = 2000
PER_TICK = 20
TICK_SECONDS = 5  # a record's second edit comes 50 ticks (250 s) after its first


@pytest.fixture
def rig(salesforce: SalesforceEmulator, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(salesforce, tmp_path / "crmsync.db")
    yield r
    r.close()


def stream(
    rig: Rig, salesforce: SalesforceEmulator, *, lookback: dt.timedelta | None, page_limit: int = 2000
) -> list[PollResult]:
    """Accounts edited 2,000 times while the poller polls every second of the org's clock; every
    50th edit is visible 4 minutes late, every 5th of the others 30 s late. Then six quiet minutes."""
    ids = [salesforce.insert("Account", {"Name": f"account {n}"}) for n in range(RECORDS)]
    salesforce.advance_clock(2)
    poller = rig.poller([ACCOUNTS], lookback=lookback, page_limit=page_limit)
    results = [poller.poll_once()]
    salesforce.late_commits(240, object_name="Account", every=50)
    salesforce.late_commits(30, object_name="Account", every=5)
    for edit in range(EDITS):
        salesforce.update("Account", ids[edit % RECORDS], {"Name": f"edit {edit}"})
        if edit % PER_TICK == PER_TICK - 1:
            for _ in range(TICK_SECONDS):
                salesforce.advance_clock(1)
                results.append(poller.poll_once())
    for _ in range(360 // TICK_SECONDS):
        salesforce.advance_clock(TICK_SECONDS)
        results.append(poller.poll_once())
    return results


def edits_received(rig: Rig) -> Counter[str]:
    return Counter(r["payload"]["Name"] for r in rig.rows() if r["payload"]["Name"].startswith("edit "))


@pytest.mark.parametrize("page_limit", [2000, 200])  # 200: the sweep reads its window in pages
def test_every_late_edit_is_caught_once_by_the_lookback_sweep(
    rig: Rig, salesforce: SalesforceEmulator, page_limit: int
) -> None:
    results = stream(rig, salesforce, lookback=dt.timedelta(minutes=5), page_limit=page_limit)
    received = edits_received(rig)
    assert set(received) == {f"edit {n}" for n in range(EDITS)}  # every edit, late or not
    assert max(received.values()) == 1 and len(rig.rows()) == EDITS  # each once
    late = sum(r.late for r in results)
    assert late >= EDITS // 5  # the late ones came from the sweep, not from the fast polls
    assert sum(r.swept for r in results) > EDITS  # rows read again cost no queue write
    assert all(not r.skipped for r in results)


def test_without_the_sweep_late_edits_are_lost(rig: Rig, salesforce: SalesforceEmulator) -> None:
    stream(rig, salesforce, lookback=None)
    missing = EDITS - len(edits_received(rig))
    assert missing >= EDITS // 5  # a 2 s overlap cannot see rows that appear 30 s late
