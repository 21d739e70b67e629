"""Seed data sets: ``empty`` (only the token's member) and ``demo`` (the sales-requests board).

``demo`` is the board workflow W1 runs against: a "Delivery" board with the lists a request moves
through, a few labels, two colleagues, the custom fields the engine fills from Salesforce and a
handful of cards, created through the same functions the API uses (so their actions exist).
"""

from __future__ import annotations

from crmsync.sandbox.trello.boards import add_board_member, create_board
from crmsync.sandbox.trello.cards import create_card
from crmsync.sandbox.trello.customfields import create_field, set_item
from crmsync.sandbox.trello.labels import create_label
from crmsync.sandbox.trello.lists import create_list
from crmsync.sandbox.trello.members import create_member
from crmsync.sandbox.trello.store import Record, State

DEMO_LISTS = ("Backlog", "In progress", "Won", "Lost", "Done")
DEMO_LABELS = (("Urgent", "red"), ("New business", "green"), ("Renewal", "blue"), ("Upsell", "yellow"))
DEMO_FIELDS: tuple[tuple[str, str], ...] = (
    ("Salesforce Task Id", "text"),
    ("Salesforce Opportunity Id", "text"),
    ("Stage", "text"),
    ("Amount", "number"),
    ("Close date", "date"),
    ("Update status", "list"),
    ("Account", "text"),
)
UPDATE_STATUS = ("OK", "Due", "Overdue")

#: name, list, label, member, task id, opportunity id, stage, amount, close date, update status
DEMO_CARDS = (
    (
        "Acme Corp: onboarding",
        "Backlog",
        "New business",
        "alice",
        "00T5g00000AcmE1",
        "0065g00000AcmE1",
        "Prospecting",
        "12000",
        "2026-03-31T00:00:00.000Z",
        "OK",
    ),
    (
        "Globex: renewal 2026",
        "In progress",
        "Renewal",
        "bob",
        "00T5g00000GlbX2",
        "0065g00000GlbX2",
        "Negotiation/Review",
        "48000",
        "2026-02-28T00:00:00.000Z",
        "Due",
    ),
    (
        "Initech: analytics upsell",
        "Won",
        "Upsell",
        "alice",
        "00T5g00000InTc3",
        "0065g00000InTc3",
        "Closed Won",
        "7500.5",
        "2026-01-15T00:00:00.000Z",
        "OK",
    ),
    (
        "Umbrella: pilot",
        "Lost",
        "Urgent",
        "bob",
        "00T5g00000UmBr4",
        "0065g00000UmBr4",
        "Closed Lost",
        "30000",
        "2026-01-10T00:00:00.000Z",
        "Overdue",
    ),
)


def load_demo(state: State, owner: str) -> None:
    alice = create_member(state, "alice", "Alice Martin", email="alice@example.com")
    bob = create_member(state, "bob", "Bob Chen", email="bob@example.com")
    people = {"alice": alice["id"], "bob": bob["id"]}
    board = create_board(
        state,
        owner,
        "Delivery",
        desc="Sales requests from Salesforce",
        default_lists=False,
        default_labels=False,
    )
    for who in people.values():
        add_board_member(state, board, who)
    lists = {name: create_list(state, owner, board, name) for name in DEMO_LISTS}
    labels = {name: create_label(state, board["id"], name, color) for name, color in DEMO_LABELS}
    fields: dict[str, Record] = {}
    for name, type_ in DEMO_FIELDS:
        choices = list(UPDATE_STATUS) if type_ == "list" else None
        fields[name] = create_field(state, board["id"], name, type_, options=choices)
    options = {o["value"]["text"]: o["id"] for o in fields["Update status"]["options"]}
    for name, list_name, label, who, task, opp, stage, amount, close, status in DEMO_CARDS:
        card = create_card(
            state,
            people[who],
            lists[list_name],
            name=name,
            desc=f"Requested in Salesforce (task {task}).",
            id_members=[people[who]],
            id_labels=[labels[label]["id"]],
        )
        values = {
            "Salesforce Task Id": {"text": task},
            "Salesforce Opportunity Id": {"text": opp},
            "Stage": {"text": stage},
            "Amount": {"number": amount},
            "Close date": {"date": close},
        }
        for field_name, value in values.items():
            set_item(state, people[who], card, fields[field_name], "value", value)
        set_item(state, people[who], card, fields["Update status"], "idValue", options[status])


def load(state: State, name: str, owner: str) -> None:
    if name == "demo":
        load_demo(state, owner)
