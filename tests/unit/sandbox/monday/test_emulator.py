"""The emulator object: seeds, state file round trip, Python API, credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.monday.errors import MondayError


def test_seeds_and_summary() -> None:
    em = MondayEmulator()
    assert em.summary() == {"boards": 0, "items": 0, "updates": 0, "webhooks": 0, "users": 1}
    em.seed("demo")
    assert em.summary()["boards"] == 2 and em.summary()["items"] == 7
    with pytest.raises(ValueError, match="valid: empty, demo"):
        em.seed("nope")
    with pytest.raises(KeyError, match="boards: Leads, Deals"):
        em.board_id("Projects")


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = tmp_path / "monday.json"
    em = MondayEmulator(state_file=state)
    em.seed("demo")
    leads = em.board_id("Leads")
    new = em.ui_create_item(leads, "Kept", values={"status": "MOU", "person": "58000003"})
    em.ui_add_update(new, "hello")
    em.add_webhook(leads, "http://127.0.0.1:9/x", "create_item")
    em.save_file()
    again = MondayEmulator(state_file=state)
    assert again.load_file()
    assert again.summary() == em.summary()
    assert again.item(new)["columns"] == em.item(new)["columns"]
    assert again.item(new)["columns"]["person"] == "Grace Hopper"
    newer = again.ui_create_item(leads, "Next")
    assert int(newer) > int(new)
    em.close()
    again.close()


def test_ui_helpers_validate_like_the_api() -> None:
    em = MondayEmulator()
    em.seed("demo")
    leads = em.board_id("Leads")
    item = em.items(leads)[0]["id"]
    with pytest.raises(MondayError) as caught:
        em.ui_change_column(item, "status", "Won")
    assert caught.value.code == "ColumnValueException"
    em.ui_change_column(item, "status", {"index": 7})
    em.ui_move_item(item, em.group_id(leads, "Qualified"))
    seen = em.item(item)
    assert seen["columns"]["status"] == "MOU" and seen["group_id"] == "group_mkr1qual"
    assert em.column_id(leads, "Salesforce Opportunity Id") == "text_mkr4oppt"
    em.ui_archive_item(item)
    assert item not in [i["id"] for i in em.items(leads)]
    assert em.items(leads, include_inactive=True)[0]["state"] == "archived"


def test_credentials() -> None:
    em = MondayEmulator(token="tok", signing_secret="sec")
    em.on_bound("http://127.0.0.1:8703")
    creds = em.credentials()
    assert creds["MONDAY_API_URL"] == "http://127.0.0.1:8703/v2"
    assert creds["MONDAY_TOKEN"] == "tok" and creds["MONDAY_SIGNING_SECRET"] == "sec"
