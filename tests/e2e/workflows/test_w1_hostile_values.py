"""Hostile values on the board pushed all the way through W1 — Trello's signed webhook → the queue →
the worker → the reporting database on SQLite, PostgreSQL and MariaDB: odd Unicode (4-byte
characters, right-to-left marks, combining and zero-width characters), a name of Trello's 16,384
characters, a NUL character (which PostgreSQL's text refuses), huge and tiny numbers.

Each hostile value either lands as the board holds it (a number as the column's floating-point type
holds it) or its change becomes a dead letter naming the value's column — only the NUL on
PostgreSQL; nothing is left waiting; and a plain card changed after them all lands.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import wait_until
from tests.e2e.workflows import test_w1_catch_up as w1
from tests.e2e.workflows.test_w1_catch_up import Crmsync, rows
from tests.e2e.workflows.test_w1_delivery_faults import settled

from crmsync.sandbox.trello import TrelloEmulator

# the board flow of the recipe, run in this process, its reporting database on each kind
crmsync, reporting_url, trello = w1.crmsync, w1.reporting_url, w1.trello

ODD = "🚀 Ünïcødé \u202eevil\u202c e\u0301 zero\u200bwidth 漢字 \U0001d518\U0001d52b\U0001d526"
LONGEST = "Ω" + "x" * 16_383  # Trello's longest name

#: (card name, what is done to it, column, the value the card then holds there)
HOSTILE: list[tuple[str, str, str, Any]] = [
    ("odd", "name", "name", ODD),
    ("long", "name", "name", LONGEST),
    ("nul", "name", "name", "before\x00after"),
    ("huge", "Amount", "amount", "9" * 40),
    ("tiny", "Amount", "amount", "0." + "0" * 30 + "1"),
    ("stage", "Stage", "stage", ODD * 20),
]


def test_hostile_board_values_land_exactly_or_are_dead_letters_and_a_plain_card_still_lands(
    crmsync: Crmsync, trello: TrelloEmulator, reporting_url: str
) -> None:
    crmsync.ensure_webhook(crmsync.start())
    board = trello.board_id("Delivery")
    backlog = trello.list_id(board, "Backlog")
    cards: dict[str, str] = {}
    for name, what, _, value in HOSTILE:
        card = trello.create_card(backlog, f"Card {name}")["id"]
        cards[name] = card
        if what == "name":
            trello.update_card(card, name=value)
        else:
            trello.set_custom_field(card, what, value)
    plain = trello.create_card(backlog, "Plain card")["id"]
    trello.set_custom_field(plain, "Amount", 1200)
    trello.move_card(plain, trello.list_id(board, "In progress"))
    assert trello.dispatcher.wait_idle(20)

    runtime = crmsync.runtime

    def current(card: str) -> dict[str, Any] | None:
        found = rows(reporting_url, f"SELECT * FROM crm_card WHERE source_id = '{card}'")
        return found[0] if found else None

    wait_until(lambda: (current(plain) or {}).get("list_name") == "In progress", timeout=30)
    wait_until(lambda: settled(crmsync), timeout=30)
    row = current(plain)
    assert row is not None and row["name"] == "Plain card" and float(row["amount"]) == 1200

    letters = {letter.record_key: letter for letter in runtime.queue.dead_letters(flow="board", limit=100)}
    outcome: dict[str, str] = {}
    for name, _, column, value in HOSTILE:
        card, held = cards[name], current(cards[name])
        if card in letters:
            message = str(letters[card].error.get("message", ""))
            assert column in message, f"{name}: the dead letter does not name {column}: {message}"
            outcome[name] = "dead letter"
            continue
        assert held is not None, f"{name}: neither landed nor a dead letter"
        got = held[column]
        same = float(got) == float(value) if column == "amount" else got == value
        assert same, f"{name}: {column} is {got!r}, the board holds {value!r}"
        outcome[name] = "landed"
    assert set(letters) <= set(cards.values())  # no plain change among the dead letters
    expected = dict.fromkeys(cards, "landed")
    if reporting_url.startswith("postgresql"):
        expected["nul"] = "dead letter"  # PostgreSQL's text cannot hold it; MariaDB and SQLite can
    assert outcome == expected
