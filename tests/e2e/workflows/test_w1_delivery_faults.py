"""W1's board flow into the reporting database — SQLite, PostgreSQL and MariaDB: Trello webhook
deliveries duplicated, reordered and dropped (the sandbox's webhook fault rules) give the same final
reporting tables, current state and history, as the same board actions delivered without a fault.

The same script of board actions runs three times, each time against a fresh Trello emulator, store
and reporting database: once without faults, twice with a fault rule placed on chosen deliveries
(the dispatcher sends one delivery at a time, so a rule added while it is idle fires on the next
action's delivery). A reordered delivery is followed at once by a newer action on the same card,
often on the same field, so it arrives after a newer value. The dropped ones are never delivered:
they are read back by the catch-up (``GET /boards/{id}/actions?since=``), run once after the
deliveries — the reconciler's, as it runs every ``interval``, then the webhook-healing job's. Card
and action ids differ between the runs, so both tables are compared with each card named by its
first name and each action by its place in the script; ``at``/``updated_at``/``recorded_at``
(wall-clock times) and the history's ``id`` (the order rows were recorded in, which a reorder
changes by design) are left out.

The history is compared row for row — one row per action, none twice, none missing, each with its
action type, card, member and ``old_values``/``new_values``: those are the action's own before and
after (Trello's ``data.old``, a move's ``listBefore``/``listAfter``, the member or label added or
removed), not what the current-state table held when the row was written, so a delivery arriving
after a newer value of its field, twice, or read back by the catch-up gives the same row as one
delivered in order. A deletion's ``deleted_at`` (the action's wall-clock time) is compared as
whether it is the row's ``at``. The rows of the run without faults are also checked against the
script's own before and after values (:data:`BEFORE_AFTER`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import wait_until
from tests.e2e.workflows.test_w1_catch_up import RECIPE, Crmsync, board_only, rows
from tests.integration.conftest import KINDS, server_database

from crmsync.engine.reconcile import BoardReconciler
from crmsync.sandbox.faults import WebhookFault
from crmsync.sandbox.runner import serve
from crmsync.sandbox.trello import TrelloEmulator
from crmsync.sandbox.trello.ids import now_iso
from crmsync.scheduler.scheduler import JobSpec, run_job

Step = tuple[WebhookFault | None, Callable[[TrelloEmulator, dict[str, str]], None]]


def script(board: str, lists: dict[str, str], labels: dict[str, str]) -> list[Step]:
    """The board actions, each with the fault its delivery suffers (``None``: delivered as is)."""

    def create(name: str, where: str) -> Callable[[TrelloEmulator, dict[str, str]], None]:
        def act(t: TrelloEmulator, cards: dict[str, str]) -> None:
            cards[name] = t.create_card(lists[where], name)["id"]

        return act

    return [
        (None, create("Card a", "Backlog")),
        (None, create("Card b", "Backlog")),
        ("duplicate", lambda t, c: t.move_card(c["Card a"], lists["In progress"])),
        ("reorder", lambda t, c: t.update_card(c["Card a"], name="Card a (v2)")),
        (None, lambda t, c: t.update_card(c["Card a"], name="Card a (v3)")),  # newer, delivered first
        ("reorder", lambda t, c: t.move_card(c["Card b"], lists["In progress"])),
        (None, lambda t, c: t.move_card(c["Card b"], lists["Done"])),
        ("drop", lambda t, c: t.comment(c["Card a"], "Called them")),
        ("duplicate", lambda t, c: t.update_card(c["Card a"], due="2027-02-01T09:00:00.000Z")),
        ("drop", lambda t, c: t.move_card(c["Card a"], lists["Done"])),
        (None, lambda t, c: t.add_member_to_card(c["Card a"], "alice")),
        ("duplicate", lambda t, c: t.add_label_to_card(c["Card b"], labels["Urgent"])),
        ("drop", lambda t, c: t.set_custom_field(c["Card b"], "Amount", 1200)),
        ("reorder", lambda t, c: t.update_card(c["Card a"], dueComplete=True)),
        (None, lambda t, c: t.comment(c["Card b"], "Sent the quote")),
        ("drop", create("Card c", "Backlog")),
        (None, lambda t, c: t.update_card(c["Card c"], name="Card c (v2)")),
        ("reorder", lambda t, c: t.remove_member_from_card(c["Card a"], "alice")),
        (None, lambda t, c: t.add_member_to_card(c["Card a"], "bob")),
        ("duplicate", lambda t, c: t.set_custom_field(c["Card c"], "Stage", "Prospecting")),
        ("reorder", lambda t, c: t.update_card(c["Card b"], closed=True)),
        (None, lambda t, c: t.update_card(c["Card b"], closed=False)),
        ("drop", lambda t, c: t.delete_card(c["Card b"])),
        (None, lambda t, c: t.move_card(c["Card a"], lists["In progress"])),
    ]


#: each script action's ``(old_values, new_values)`` in crm_events, in the script's order
BEFORE_AFTER: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({}, {"name": "Card a", "list_name": "Backlog"}),
    ({}, {"name": "Card b", "list_name": "Backlog"}),
    ({"list_name": "Backlog"}, {"list_name": "In progress"}),
    ({"name": "Card a"}, {"name": "Card a (v2)"}),
    ({"name": "Card a (v2)"}, {"name": "Card a (v3)"}),
    ({"list_name": "Backlog"}, {"list_name": "In progress"}),
    ({"list_name": "In progress"}, {"list_name": "Done"}),
    ({}, {"text": "Called them"}),
    ({"due": None}, {"due": "2027-02-01T09:00:00+00:00"}),
    ({"list_name": "In progress"}, {"list_name": "Done"}),
    ({}, {"member": "alice"}),
    ({}, {"label": "Urgent"}),
    ({"amount": None}, {"amount": 1200}),
    ({"due_complete": False}, {"due_complete": True}),
    ({}, {"text": "Sent the quote"}),
    ({}, {"name": "Card c", "list_name": "Backlog"}),
    ({"name": "Card c"}, {"name": "Card c (v2)"}),
    ({"member": "alice"}, {}),
    ({}, {"member": "bob"}),
    ({"stage": None}, {"stage": "Prospecting"}),
    ({"closed": False}, {"closed": True}),
    ({"closed": True}, {"closed": False}),
    ({"deleted_at": None}, {"deleted_at": "at"}),
    ({"list_name": "Done"}, {"list_name": "In progress"}),
]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def reporting_database(stack: ExitStack, kind: str, folder: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'reporting.db'}"
    return stack.enter_context(server_database(kind))


def play(
    folder: Path, kind: str, monkeypatch: pytest.MonkeyPatch, *, faults: bool, healing: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the script against a fresh emulator, store and reporting database; the final tables,
    normalised (see the module's docstring): ``(current rows, history rows)``."""
    folder.mkdir()
    with ExitStack() as stack:
        trello = TrelloEmulator(retry_delays=(0.05, 0.1, 0.15))
        trello.seed("demo")
        stack.enter_context(serve(trello))
        url = reporting_database(stack, kind, folder)
        for key, value in trello.credentials().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("REPORTING_DB_URL", url)
        config = folder / "crmsync.yaml"
        config.write_text(board_only(RECIPE.read_text(), folder / "crmsync.db"))
        crmsync = Crmsync(config)
        stack.callback(crmsync.stop)
        crmsync.ensure_webhook(crmsync.start())

        board = trello.board_id("Delivery")
        lists = {n: trello.list_id(board, n) for n in ("Backlog", "In progress", "Done")}
        labels = {n: trello.label_id(board, n) for n in ("Urgent",)}
        seen = {a["id"] for a in trello.actions(board)}
        cards: dict[str, str] = {}
        fired: list[tuple[WebhookFault, Any]] = []
        for fault, act in script(board, lists, labels):
            if faults and fault is not None:
                fired.append((fault, trello.faults.add(webhook=fault, count=1)))
            act(trello, cards)
            if fault != "reorder":  # a held delivery goes right after the next action's
                # (Trello's member and label actions name one member or label: the card's whole
                # set is read when the delivery comes, so each is delivered before the next action)
                assert trello.dispatcher.wait_idle(10)
            # Trello dates actions to the millisecond: the next action is made in a later one, as
            # a person's (or an automation's) would be, so that "newer" is defined
            last = trello.actions(board, limit=1)[0]["date"]
            wait_until(lambda last=last: now_iso() > last, timeout=1, interval=0.001)
        assert trello.dispatcher.wait_idle(10)
        assert all(rule.fired == 1 for _, rule in fired)  # every fault happened
        actions = [a for a in reversed(trello.actions(board)) if a["id"] not in seen]
        assert len(actions) == len(script(board, lists, labels))
        delivered = {a["id"] for a in actions}
        dropped = len([f for f, _ in fired if f == "drop"])

        def recorded() -> set[str]:
            return {e["delivery_id"] for e in rows(url, "SELECT delivery_id FROM crm_events")} & delivered

        # everything delivered is recorded, the dropped ones are not (yet)
        wait_until(lambda: len(recorded()) == len(actions) - dropped, timeout=25)
        wait_until(lambda: settled(crmsync), timeout=25)
        runtime = crmsync.runtime
        if healing:  # the webhook-healing job's catch-up, instead of the reconciler's
            ran = run_job(
                runtime.store, "healing", JobSpec(job="webhook-healing", cron="@hourly"), runtime=runtime
            )
            assert ran.status == "succeeded", ran.message
        else:
            BoardReconciler(runtime, "trello", runtime.reconcile_targets()["trello"]).reconcile_once()
        wait_until(lambda: len(recorded()) == len(actions), timeout=25)
        wait_until(lambda: settled(crmsync), timeout=25)

        names = {card_id: name for name, card_id in cards.items()}
        order = {a["id"]: i for i, a in enumerate(actions)}
        current = sorted(
            (
                {
                    **{k: _plain(v) for k, v in r.items() if k not in ("updated_at", "deleted_at")},
                    "source_id": names[r["source_id"]],
                    "deleted": r["deleted_at"] is not None,
                }
                for r in rows(url, "SELECT * FROM crm_card")
                if r["source_id"] in names
            ),
            key=lambda r: str(r["source_id"]),
        )
        history = sorted(
            (
                {
                    "action": order[e["delivery_id"]],
                    "type": e["action"],
                    "card": names[e["source_id"]],
                    "who": e["who"],
                    "old_values": _times(_json(e["old_values"]), e["at"]),
                    "new_values": _times(_json(e["new_values"]), e["at"]),
                }
                for e in rows(url, "SELECT * FROM crm_events")
                if e["delivery_id"] in order
            ),
            key=lambda e: int(e["action"]),
        )
        return current, history


def settled(crmsync: Crmsync) -> bool:
    stats = crmsync.runtime.queue.stats()
    return stats.pending == 0 and stats.leased == 0 and stats.retrying == 0


def _plain(value: Any) -> Any:
    return _json(value) if isinstance(value, str) and value[:1] in "[{" else value


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _times(values: dict[str, Any], at: Any) -> dict[str, Any]:
    """A deletion's ``deleted_at`` (the action's wall-clock time) as whether it is the row's ``at``."""
    if values.get("deleted_at") is None:
        return values
    deleted = dt.datetime.fromisoformat(str(values["deleted_at"])).replace(tzinfo=None)
    row_at = at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(str(at))
    return {**values, "deleted_at": "at" if deleted == row_at.replace(tzinfo=None) else str(deleted)}


def test_duplicated_reordered_and_dropped_deliveries_give_the_same_reporting_tables(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_current, clean_history = play(tmp_path / "clean", kind, monkeypatch, faults=False)
    faulty_current, faulty_history = play(tmp_path / "faults", kind, monkeypatch, faults=True)
    assert len(clean_history) == len(script("", {}, {})) and len(clean_current) == 3
    assert [(e["old_values"], e["new_values"]) for e in clean_history] == BEFORE_AFTER
    assert faulty_current == clean_current
    assert faulty_history == clean_history
    # the dropped deliveries read back by the webhook-healing job instead
    healed_current, healed_history = play(tmp_path / "healed", kind, monkeypatch, faults=True, healing=True)
    assert healed_current == clean_current
    assert healed_history == clean_history
