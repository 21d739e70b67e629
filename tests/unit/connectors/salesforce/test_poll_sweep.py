"""The lookback sweep's plan and settings."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from crmsync.config.models import SalesforceConnection
from crmsync.connectors.polling import PollTarget
from crmsync.connectors.salesforce.poll_plan import build_feeds, query_subrequest, sweep_soql
from crmsync.connectors.salesforce.poller import sweep_settings

FEED = build_feeds([PollTarget("f", "sf", "Account", ("Name",))])[0]
LOW = dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC)
HIGH = LOW + dt.timedelta(minutes=6)


def test_the_sweep_reads_a_bounded_window_and_continues_below_its_top() -> None:
    assert sweep_soql(FEED, low=LOW, high=HIGH) == (
        "SELECT Id, Name, SystemModstamp, IsDeleted FROM Account WHERE SystemModstamp > "
        "2026-05-01T10:00:00Z AND SystemModstamp <= 2026-05-01T10:06:00Z "
        "ORDER BY SystemModstamp, Id LIMIT 2000"
    )
    after = sweep_soql(FEED, low=LOW, high=HIGH, after=(LOW, "001A"), limit=10)
    assert "((SystemModstamp = 2026-05-01T10:00:00Z AND Id > '001A') OR SystemModstamp > " in after
    assert after.endswith("AND SystemModstamp <= 2026-05-01T10:06:00Z ORDER BY SystemModstamp, Id LIMIT 10")
    sub = query_subrequest(0, after, "sweep")
    assert sub.is_query and sub.url.startswith("queryAll/?q=")  # counts as one of a call's 5 queries


def test_settings_from_the_connection() -> None:
    defaults = SalesforceConnection(type="salesforce")
    assert sweep_settings(defaults.lookback_seconds, defaults.sweep_every_seconds) == {
        "lookback": dt.timedelta(minutes=5),
        "sweep_every": dt.timedelta(minutes=1),
    }
    assert sweep_settings(0, 60)["lookback"] is None
    with pytest.raises(ValidationError, match="longer than the poller's 2 s overlap"):
        SalesforceConnection(type="salesforce", lookback_seconds=1)
    with pytest.raises(ValidationError):
        SalesforceConnection(type="salesforce", sweep_every_seconds=0)
