"""Seed data sets: ``empty`` (the account and its API user) and ``demo`` (Leads and Deals boards).

The demo Leads board is the one of workflow W2: a status column with the lead lifecycle
labels, contact columns, the amount and close date, an owner, and text columns that keep the
Salesforce ids written back by crmsync. The Deals board links to leads (board_relation) and
uses the remaining column types (dropdown, checkbox, long_text).
"""

from __future__ import annotations

from typing import Any

from crmsync.sandbox.monday import columns as cols
from crmsync.sandbox.monday.store import Board, Column, Group, Item, Store, User

API_USER = User(58_000_001, "Alex Admin", "alex.admin@sandbox.example")
PEOPLE = (
    User(58_000_002, "Ada Lovelace", "ada@sandbox.example"),
    User(58_000_003, "Grace Hopper", "grace@sandbox.example"),
    User(58_000_004, "Alan Turing", "alan@sandbox.example"),
)
TEAMS = (User(58_000_101, "Sales", "sales@sandbox.example", kind="team"),)

LEAD_STATUSES = {
    3: "New",
    0: "Working on it",
    1: "Qualified",
    4: "Follow-up",
    6: "Quote",
    7: "MOU",
    2: "Lost",
}
DEAL_STAGES = {
    0: "Prospecting",
    3: "Qualification",
    6: "Proposal",
    4: "Negotiation",
    1: "Closed Won",
    2: "Closed Lost",
}


def status_settings(labels: dict[int, str], done: tuple[int, ...] = (1,)) -> dict[str, Any]:
    return {
        "labels": {str(i): text for i, text in labels.items()},
        "labels_colors": {
            str(i): dict(zip(("color", "border", "var_name"), cols.STATUS_STYLES[i], strict=True))
            for i in labels
        },
        "done_colors": list(done),
    }


def base_account(store: Store) -> None:
    """What every state has: the user the API tokens belong to."""
    store.users[API_USER.id] = User(**vars(API_USER))


def load(store: Store, name: str) -> None:
    if name == "empty":
        return
    if name != "demo":
        raise ValueError(f"unknown seed {name!r}; valid: empty, demo")
    for user in (*PEOPLE, *TEAMS):
        store.users[user.id] = User(**vars(user))
    leads = Board(
        id=store.next_board_id(),
        name="Leads",
        owner_id=API_USER.id,
        workspace_id=7_000_001,
        columns=[
            Column("name", "Name", "name"),
            Column("status", "Status", "status", status_settings(LEAD_STATUSES)),
            Column("email", "Email", "email"),
            Column("phone", "Phone", "phone"),
            Column("text", "Company", "text"),
            Column("numbers", "Amount", "numbers"),
            Column("date4", "Close date", "date"),
            Column("person", "Owner", "people"),
            Column("text_mkr1lead", "Salesforce Lead Id", "text"),
            Column("text_mkr2acct", "Salesforce Account Id", "text"),
            Column("text_mkr3cont", "Salesforce Contact Id", "text"),
            Column("text_mkr4oppt", "Salesforce Opportunity Id", "text"),
            Column("link", "Website", "link"),
        ],
        groups=[
            Group("topics", "New leads", "#579bfc", "65536"),
            Group("group_mkr1qual", "Qualified", "#00c875", "131072"),
            Group("group_mkr2lost", "Lost", "#c4c4c4", "196608"),
        ],
    )
    store.boards[leads.id] = leads
    ada, grace, alan = (p.id for p in PEOPLE)
    lead_rows: list[tuple[str, str, dict[str, Any]]] = [
        (
            "Jane Cooper",
            "topics",
            {
                "status": 3,
                "email": "jane@acme.example",
                "text": "Acme Corp",
                "numbers": "12000",
                "person": ada,
                "link": "https://acme.example",
            },
        ),
        (
            "Wade Warren",
            "topics",
            {
                "status": 0,
                "email": "wade@globex.example",
                "phone": "+15551234567",
                "text": "Globex",
                "numbers": "5400",
                "date4": "2026-12-15",
                "person": grace,
            },
        ),
        (
            "Esther Howard",
            "topics",
            {"status": 4, "email": "esther@initech.example", "text": "Initech", "person": alan},
        ),
        (
            "Cameron Williamson",
            "group_mkr1qual",
            {
                "status": 1,
                "email": "cameron@umbrella.example",
                "text": "Umbrella",
                "numbers": "48000",
                "date4": "2027-01-31",
                "person": ada,
                "text_mkr1lead": "00Q5g00000AbCdEEAV",
            },
        ),
        (
            "Brooklyn Simmons",
            "group_mkr2lost",
            {"status": 2, "email": "brooklyn@hooli.example", "text": "Hooli"},
        ),
    ]
    lead_ids = [_add_item(store, leads, name, group, values) for name, group, values in lead_rows]

    deals = Board(
        id=store.next_board_id(),
        name="Deals",
        owner_id=API_USER.id,
        workspace_id=7_000_001,
        columns=[
            Column("name", "Deal", "name"),
            Column("status", "Stage", "status", status_settings(DEAL_STAGES)),
            Column("numbers", "Amount", "numbers"),
            Column("date", "Close date", "date"),
            Column("person", "Owner", "people"),
            Column("board_relation_mkr1", "Lead", "board_relation", {"boardIds": [leads.id]}),
            Column("text_mkr4oppt", "Salesforce Opportunity Id", "text"),
            Column(
                "dropdown",
                "Products",
                "dropdown",
                {
                    "labels": [
                        {"id": 1, "name": "Ads"},
                        {"id": 2, "name": "Analytics"},
                        {"id": 3, "name": "Support"},
                    ]
                },
            ),
            Column("checkbox", "Signed", "checkbox"),
            Column("long_text", "Notes", "long_text"),
        ],
        groups=[
            Group("topics", "Open deals", "#fdab3d", "65536"),
            Group("group_mkr3won", "Won", "#00c875", "131072"),
        ],
    )
    store.boards[deals.id] = deals
    _add_item(
        store,
        deals,
        "Umbrella - platform",
        "topics",
        {
            "status": 6,
            "numbers": "48000",
            "date": "2027-01-31",
            "person": ada,
            "board_relation_mkr1": [lead_ids[3]],
            "dropdown": [1, 2],
            "long_text": "Wants a pilot first.",
        },
    )
    _add_item(
        store,
        deals,
        "Globex - renewal",
        "group_mkr3won",
        {
            "status": 1,
            "numbers": "5400",
            "date": "2026-10-01",
            "person": grace,
            "checkbox": True,
            "dropdown": [3],
        },
    )


def _add_item(store: Store, board: Board, name: str, group_id: str, values: dict[str, Any]) -> int:
    stored: dict[str, dict[str, Any]] = {}
    changed = "2026-10-01T09:00:00.000Z"
    for column_id, v in values.items():
        column = board.column(column_id)
        assert column is not None, column_id
        if column.type == "status":
            stored[column_id] = {"index": v, "changed_at": changed}
        elif column.type in ("text",):
            stored[column_id] = {"text": v}
        elif column.type == "numbers":
            stored[column_id] = {"number": v}
        elif column.type == "long_text":
            stored[column_id] = {"text": v, "changed_at": changed}
        elif column.type == "email":
            stored[column_id] = {"email": v, "text": v, "changed_at": changed}
        elif column.type == "phone":
            stored[column_id] = {"phone": v, "countryShortName": "US", "changed_at": changed}
        elif column.type == "link":
            stored[column_id] = {"url": v, "text": v, "changed_at": changed}
        elif column.type == "date":
            stored[column_id] = {"date": v, "time": None, "changed_at": changed}
        elif column.type == "people":
            stored[column_id] = {"personsAndTeams": [{"id": v, "kind": "person"}], "changed_at": changed}
        elif column.type == "board_relation":
            stored[column_id] = {"item_ids": list(v), "changed_at": changed}
        elif column.type == "dropdown":
            stored[column_id] = {"ids": list(v), "changed_at": changed}
        elif column.type == "checkbox":
            stored[column_id] = {"checked": "true", "changed_at": changed}
    item = Item(
        id=store.next_item_id(),
        board_id=board.id,
        group_id=group_id,
        name=name,
        creator_id=API_USER.id,
        position=float(len(store.board_items(board.id, active_only=False)) + 1),
        values=stored,
        created_at="2026-10-01T09:00:00Z",
        updated_at="2026-10-01T09:00:00Z",
        updated_seq=store.next_seq(),
    )
    store.items[item.id] = item
    return item.id
