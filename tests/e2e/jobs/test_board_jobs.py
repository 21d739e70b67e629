"""The board jobs on a seeded Delivery board of 200 cards (Trello emulator), opportunities in an
in-memory CRM and a reporting database (the snapshot, the one job writing to it, on SQLite,
PostgreSQL and MariaDB): each makes the expected changes, and a second run
changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from tests.e2e.jobs.conftest import Board
from tests.integration.conftest import KINDS

from crmsync.jobs.values import same

BOARD = {"board": "board", "crm": "crm"}


def _field(board: Board, card: dict[str, object], name: str) -> object:
    field = board.emulator.custom_field_id(board.board_id, name)
    for item in card.get("customFieldItems") or []:  # type: ignore[attr-defined]
        if item["idCustomField"] == field:
            value = item.get("value") or {}
            if item.get("idValue"):
                rec = board.emulator.state.custom_fields[field]
                return next(o["value"]["text"] for o in rec["options"] if o["id"] == item["idValue"])
            return next(iter(value.values()), None)
    return None


def test_trello_refresh_writes_only_what_changed_and_a_second_run_nothing(board: Board) -> None:
    before = len(board.emulator.actions(board.board_id))
    summary = board.run("refresh", "trello-refresh", **BOARD)
    assert summary.startswith("200 linked cards: 200 updated"), summary
    for card_id, card in board.cards().items():
        opp = board.crm.get("Opportunity", board.links[card_id])
        assert opp is not None
        assert _field(board, card, "Stage") == opp.fields["StageName"]
        assert same(_field(board, card, "Amount"), opp.fields["Amount"])
        assert same(_field(board, card, "Close date"), opp.fields["CloseDate"])
    written = len(board.emulator.actions(board.board_id))
    assert written > before

    again = board.run("refresh", "trello-refresh", **BOARD)
    assert "0 updated (0 fields), 200 unchanged" in again, again
    assert len(board.emulator.actions(board.board_id)) == written  # not one write

    one = next(iter(board.links.values()))
    board.crm.update("Opportunity", one, {"Amount": 1.5})
    third = board.run("refresh", "trello-refresh", **BOARD)
    assert "1 updated (1 fields), 199 unchanged" in third, third


def test_win_loss_mover_moves_closed_opportunities_cards_once(board: Board) -> None:
    expected: dict[str, str] = {}
    for card_id in board.cards():
        stage = board.crm.get("Opportunity", board.links[card_id]).fields["StageName"]  # type: ignore[union-attr]
        wanted = {"Closed Won": "Won", "Closed Lost": "Lost"}.get(stage)
        if wanted:
            expected[card_id] = board.emulator.list_id(board.board_id, wanted)
    misplaced = sum(1 for i, lst in expected.items() if board.cards()[i]["idList"] != lst)
    assert misplaced > 10
    summary = board.run("mover", "win-loss-mover", **BOARD)
    assert f"{misplaced} moved" in summary, summary
    cards = board.cards()
    assert all(cards[i]["idList"] == lst for i, lst in expected.items())
    actions = len(board.emulator.actions(board.board_id))
    assert "0 moved" in board.run("mover", "win-loss-mover", **BOARD)
    assert len(board.emulator.actions(board.board_id)) == actions


@pytest.mark.parametrize("board", KINDS, indirect=True)
def test_workload_snapshot_counts_cards_per_list_member_and_status_once_a_day(board: Board) -> None:
    args = {"board": "board", "target": "reporting"}
    summary = board.run("snapshot", "workload-snapshot", **args)
    assert summary.startswith("200 cards in "), summary
    engine = sa.create_engine(board.config.connections["reporting"].url.get_secret_value())  # type: ignore[union-attr]
    query = "SELECT list_name, member, status, card_count FROM crm_workload_snapshot"
    with engine.connect() as conn:
        first = sorted((tuple(r) for r in conn.exec_driver_sql(query)), key=str)
    assert sum(r[3] for r in first) == 200  # one member or none on every card
    assert ("Backlog", "alice", "OK", 1) in first  # the seeded Acme card
    board.run("snapshot", "workload-snapshot", **args)
    with engine.connect() as conn:
        assert (
            sorted((tuple(r) for r in conn.exec_driver_sql(query)), key=str) == first
        )  # replaced, not doubled
        days = conn.exec_driver_sql("SELECT DISTINCT snapshot_date FROM crm_workload_snapshot").all()
    assert len(days) == 1
    engine.dispose()


def test_update_status_nudge_sets_the_status_from_days_since_the_last_change(board: Board) -> None:
    cards = list(board.cards())
    old, older = cards[:50], cards[50:80]
    now = dt.datetime.now(dt.UTC)
    with board.emulator.lock:  # the history of 80 cards goes back in time
        for action in board.emulator.state.actions:
            card = ((action.get("data") or {}).get("card") or {}).get("id")
            if card in old or card in older:
                days = 10 if card in old else 20
                action["date"] = (now - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    args = {"board": "board", "due_after_days": 7, "overdue_after_days": 14}
    summary = board.run("nudge", "update-status-nudge", **args)
    assert "(120 OK, 50 Due, 30 Overdue)" in summary, summary
    state = board.cards()
    assert all(_field(board, state[i], "Update status") == "Due" for i in old)
    assert all(_field(board, state[i], "Update status") == "Overdue" for i in older)
    assert all(_field(board, state[i], "Update status") == "OK" for i in cards[80:])
    again = board.run("nudge", "update-status-nudge", **args)
    assert "(120 OK, 50 Due, 30 Overdue): 0 statuses changed" in again, again
