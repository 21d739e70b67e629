"""The chaos suite's fixtures: a PostgreSQL cluster of its own, the run's size and its seed.

``make test`` runs the nightly size; ``make chaos`` sets ``CRMSYNC_CHAOS_SIZE=full``. The seed of a
run is printed; ``CRMSYNC_CHAOS_SEED=N`` replays it (the monkey's plan, the workload and the
vendors' fault draws — not the operating system's timing).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from .cluster import PostgresCluster

SIZES = ("nightly", "full")


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def size() -> str:
    value = os.environ.get("CRMSYNC_CHAOS_SIZE", "nightly")
    if value not in SIZES:
        pytest.fail(f"CRMSYNC_CHAOS_SIZE={value!r}: expected one of {', '.join(SIZES)}", pytrace=False)
    return value


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("CRMSYNC_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"chaos seed: {value} (CRMSYNC_CHAOS_SEED={value} replays it)")
    return value
