from __future__ import annotations

import random

import pytest

from crmsync.engine.backoff import Backoff
from crmsync.engine.queue import fold


def test_upserts_merge_later_wins() -> None:
    assert fold([("upsert", {"a": 1, "b": 1}), ("upsert", {"b": 2})]) == ("upsert", {"a": 1, "b": 2})


def test_a_delete_wipes_the_fields() -> None:
    assert fold([("upsert", {"a": 1}), ("delete", {"a": 9})]) == ("delete", {})


def test_an_upsert_after_a_delete_starts_afresh() -> None:
    assert fold([("upsert", {"a": 1}), ("delete", {}), ("upsert", {"b": 2})]) == ("upsert", {"b": 2})


def test_fold_does_not_change_its_input() -> None:
    first = {"a": 1}
    fold([("upsert", first), ("upsert", {"a": 2})])
    assert first == {"a": 1}


def test_fold_needs_a_change() -> None:
    with pytest.raises(ValueError):
        fold([])


def test_backoff_grows_exponentially_up_to_the_maximum() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, maximum=300.0, jitter=0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 9, 10, 1000)] == [1, 2, 4, 8, 256, 300, 300]


def test_backoff_jitter_stays_within_its_fraction_and_varies() -> None:
    backoff = Backoff(jitter=0.2)
    rng = random.Random(1)
    delays = [backoff.delay(3, rng=rng) for _ in range(200)]
    assert all(3.2 <= d <= 4.8 for d in delays)
    assert len(set(delays)) > 100


@pytest.mark.parametrize("kwargs", [{"initial": -1}, {"factor": 0.5}, {"jitter": 1.5}])
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
