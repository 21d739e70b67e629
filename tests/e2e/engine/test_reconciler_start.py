"""A worker process starting while monday fails starts all the same: its board reconciler notes when
crmsync began listening on its first pass that works, instead of stopping the process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync.engine.reconcile import BoardReconciler
from crmsync.engine.runtime import Runtime
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.store import watermarks

from ..workflows.test_monday_salesforce import W2, start_w2


@pytest.fixture
def w2(tmp_path: Path, salesforce: SalesforceEmulator) -> Iterator[W2]:
    """W2 receiving webhooks, with no worker or reconciler running."""
    yield from start_w2(tmp_path, salesforce, workers=0)


def test_a_reconciler_built_while_monday_fails_notes_its_start_on_its_first_pass(w2: W2) -> None:
    runtime = Runtime(w2.runtime.config, store=w2.runtime.store)  # a process starting: no board ids known
    try:
        listening = f"listening:{w2.board}"
        assert watermarks.get(runtime.store, "monday", listening) is None
        rule = w2.monday.faults.add(path="^/v2", error="server_error", count=1)  # the board lookup fails

        reconciler = BoardReconciler(runtime, "monday", ["leads"])  # the process goes on
        assert rule.fired == 1
        assert watermarks.get(runtime.store, "monday", listening) is None

        reconciler.reconcile_once()  # monday answers again
        assert watermarks.get(runtime.store, "monday", listening) is not None
    finally:
        runtime.close()  # its connectors (the store is the fixture's, disposed and reopened on use)
