"""The built-in jobs on in-memory connections and fakes: what each writes, that a second run writes
nothing, and what a connection without the needed capability is told."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from crmsync.config import load_config
from crmsync.config.models import Config
from crmsync.connectors.base import Write
from crmsync.connectors.memory.connector import MemoryConnector
from crmsync.connectors.memory.system import MemorySystem
from crmsync.errors import ConfigError
from crmsync.jobs import registry
from crmsync.jobs.base import JobContext
from crmsync.jobs.values import same
from crmsync.store.db import Store

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Config]:
    path = tmp_path / "crmsync.yaml"
    path.write_text(
        f"""\
store: {{url: "sqlite:///{tmp_path / "crmsync.db"}"}}
connections:
  board: {{type: memory, system: board-{tmp_path.name}}}
  crm: {{type: memory, system: crm-{tmp_path.name}}}
"""
    )
    yield load_config(path, environ={})
    MemorySystem.discard(f"board-{tmp_path.name}")
    MemorySystem.discard(f"crm-{tmp_path.name}")


def systems(config: Config) -> tuple[MemorySystem, MemorySystem]:
    return tuple(MemorySystem.named(config.connections[n].system) for n in ("board", "crm"))  # type: ignore[union-attr,return-value]


def run(config: Config, job: str, runtime: Any = None, **args: Any) -> str:
    store = Store(config.store.url)
    store.upgrade()
    cls = registry.get(job)
    ctx = JobContext(
        store,
        config,
        args,
        logging.getLogger("test"),
        name=job,
        clock=lambda: NOW,
        settings=cls.settings_of(args),
        runtime_given=runtime,
    )
    try:
        return cls().run(ctx)
    finally:
        ctx.close()
        store.dispose()


def seed(config: Config) -> tuple[MemorySystem, MemorySystem]:
    board, crm = systems(config)
    crm.insert(
        "Opportunity",
        {"StageName": "Closed Won", "Amount": 100.0, "CloseDate": "2026-03-31"},
        record_id="006A",
    )
    crm.insert(
        "Opportunity", {"StageName": "Proposal", "Amount": 50, "CloseDate": "2026-04-30"}, record_id="006B"
    )
    crm.insert(
        "Opportunity", {"StageName": "Closed Lost", "Amount": 7, "CloseDate": "2026-01-31"}, record_id="006C"
    )
    board.insert(
        "Card", {"list": "Backlog", "Salesforce Opportunity Id": "006A", "Stage": "Proposal"}, record_id="c1"
    )
    board.insert(
        "Card",
        {"list": "Doing", "Salesforce Opportunity Id": "006B", "Stage": "Proposal", "Amount": "50",
         "Close date": "2026-04-30T00:00:00.000Z"},
        record_id="c2",
    )  # fmt: skip
    board.insert("Card", {"list": "Lost", "Salesforce Opportunity Id": "006C"}, record_id="c3")
    board.insert("Card", {"list": "Backlog", "Salesforce Opportunity Id": "006Z"}, record_id="c4")
    board.insert("Card", {"list": "Backlog"}, record_id="c5")
    return board, crm


def test_trello_refresh_writes_the_fields_that_differ_once(config: Config) -> None:
    board, _ = seed(config)
    summary = run(config, "trello-refresh", board="board", crm="crm")
    assert summary == "4 linked cards: 2 updated (6 fields), 1 unchanged, 1 opportunities not found"
    assert board.get("Card", "c1").fields["Stage"] == "Closed Won"  # type: ignore[union-attr]
    assert board.get("Card", "c1").fields["Amount"] == 100.0  # type: ignore[union-attr]
    assert board.get("Card", "c2").fields["Amount"] == "50"  # the same value, spelled differently: kept  # type: ignore[union-attr]
    assert run(config, "trello-refresh", board="board", crm="crm").startswith("4 linked cards: 0 updated")


def test_win_loss_mover_moves_only_misplaced_cards(config: Config) -> None:
    board, _ = seed(config)
    assert run(config, "win-loss-mover", board="board", crm="crm") == (
        "1 won and 1 lost opportunities' cards: 1 moved, 1 already in place"
    )
    assert board.get("Card", "c1").fields["list"] == "Won"  # type: ignore[union-attr]
    assert "0 moved" in run(config, "win-loss-mover", board="board", crm="crm")


def test_a_job_asking_a_connection_for_what_it_cannot_do_names_both(config: Config) -> None:
    seed(config)
    with pytest.raises(ConfigError) as caught:
        run(config, "update-status-nudge", board="board")
    message = str(caught.value)
    assert "connection 'board' (type memory) does not tell when records last changed (ActivityLog)" in message
    assert "job 'update-status-nudge'" in message


class _History(MemoryConnector):
    """An in-memory board that knows when its cards changed (what Trello's actions tell)."""

    changed: dict[str, dt.datetime] = {}

    def last_changed(
        self, object_name: str, ids: Sequence[str], *, ignoring: Sequence[str] = ()
    ) -> dict[str, dt.datetime]:
        assert "Update status" in ignoring  # its own writes never count
        return {i: self.changed[i] for i in ids if i in self.changed}


class _Runtime:
    def __init__(self, config: Config, connector: Any) -> None:
        self.config = config
        self._connector = connector

    def connector(self, name: str) -> Any:
        return self._connector

    def close(self) -> None:
        pass


def test_update_status_nudge_from_days_since_the_last_change(config: Config) -> None:
    board, _ = seed(config)
    history = _History.from_config("board", config.connections["board"])
    history.changed = {
        "c1": NOW - dt.timedelta(days=1),
        "c2": NOW - dt.timedelta(days=8),
        "c3": NOW - dt.timedelta(days=30),
    }
    rt = _Runtime(config, history)
    args = {"board": "board", "due_after_days": 7, "overdue_after_days": 14}
    assert (
        run(config, "update-status-nudge", rt, **args)
        == "5 cards (1 OK, 1 Due, 1 Overdue): 3 statuses changed"
    )
    statuses = {i: board.get("Card", i).fields.get("Update status") for i in ("c1", "c2", "c3", "c4")}  # type: ignore[union-attr]
    assert statuses == {"c1": "OK", "c2": "Due", "c3": "Overdue", "c4": None}  # c4: no history, left alone
    assert run(config, "update-status-nudge", rt, **args).endswith(": 0 statuses changed")
    history.write_batch("Card", [Write("c2", "update", {"Update status": "OK"}, target_id="c2")])
    assert run(config, "update-status-nudge", rt, **args).endswith(": 1 statuses changed")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("2026-03-31", "2026-03-31T00:00:00.000Z", True),
        ("2026-03-31", "2026-03-31T10:00:00.000Z", False),
        (12000, "12000.0", True),
        (12000.5, 12000, False),
        (None, "", True),
        (None, 0, False),
        (True, "true", True),
        ("Closed Won", "Closed won", False),
        (dt.date(2026, 3, 31), "2026-03-31", True),
    ],
)
def test_same_values_spelled_differently(a: Any, b: Any, expected: bool) -> None:
    assert same(a, b) is expected
    assert same(b, a) is expected


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (
            {"source": "report", "target": "r", "id_column": "Id", "columns": {}},
            "needs connection and report_id",
        ),
        ({"source": "csv", "target": "r", "id_column": "Id", "columns": {}}, "needs file"),
        (
            {
                "source": "csv",
                "file": "a.csv",
                "target": "r",
                "id_column": "Id",
                "columns": {"a": "A"},
                "types": {"b": "date"},
            },
            "types names columns that are not in columns: b",
        ),
    ],
)
def test_report_import_settings_say_what_a_source_needs(args: dict[str, Any], problem: str) -> None:
    assert any(problem in p for p in registry.get("salesforce-report-import").check_args(args))
