"""The call log tells how many requests were in flight at once (from arrival to answer)."""

from __future__ import annotations

from unittest import mock

from crmsync.sandbox.calls import CallLog


def test_peak_in_flight_counts_overlapping_calls_under_a_path() -> None:
    log = CallLog()
    with mock.patch("crmsync.sandbox.calls.time.time", side_effect=[2.0, 3.0, 4.5, 9.0]):
        log.record("GET", "/services/data/v66.0/limits", 200, started=1.0)  # 1.0 → 2.0
        log.record("GET", "/services/data/v66.0/query", 200, started=1.5)  # 1.5 → 3.0
        log.record("POST", "/services/oauth2/token", 200, started=1.6)  # 1.6 → 4.5, not data
        log.record("GET", "/services/data/v66.0/query", 200, started=3.0)  # 3.0 → 9.0: after one ended
    assert log.peak_in_flight("/services/data/") == 2
    assert log.peak_in_flight() == 3
    assert [round(c.answered - c.started, 1) for c in log.calls()] == [1.0, 1.5, 2.9, 6.0]
    assert log.peak_in_flight("/nothing") == 0
