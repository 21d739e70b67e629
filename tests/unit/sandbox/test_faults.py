"""Fault rules drawn from a seeded generator fire on the same requests when a run is replayed."""

from __future__ import annotations

from crmsync.sandbox.faults import FaultSet


def fired(seed: str) -> list[bool]:
    faults = FaultSet()
    faults.seed(seed)
    faults.add(path="^/services/data", error="unavailable", probability=0.3)
    return [faults.for_request("GET", "/services/data/v66.0/query") is not None for _ in range(200)]


def test_a_seeded_fault_set_fires_on_the_same_requests_again() -> None:
    first = fired("run-7")
    assert first == fired("run-7")
    assert 20 < sum(first) < 100  # about 30 % fired
    assert first != fired("run-8")
