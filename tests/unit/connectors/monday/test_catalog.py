"""The labels of a board's status and dropdown columns, and the values monday would refuse."""

from __future__ import annotations

import json

from crmsync.connectors.monday.catalog import choices_of

COLUMNS = [
    {
        "id": "status",
        "title": "Stage",
        "type": "status",
        "settings_str": json.dumps({"labels": {"0": "Open"}}),
    },
    {
        "id": "dropdown",
        "title": "Tags",
        "type": "dropdown",
        "settings_str": json.dumps({"labels": [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}]}),
    },
    {"id": "text", "title": "Notes", "type": "text", "settings_str": "{}"},
]


def test_only_status_and_dropdown_columns_have_choices() -> None:
    choices = choices_of(COLUMNS)
    assert set(choices) == {"status", "dropdown"}
    assert choices["status"].labels == ("Open",) and choices["dropdown"].labels == ("red", "blue")
    assert choices["dropdown"].multiple and not choices["status"].multiple


def test_values_monday_would_refuse() -> None:
    status, dropdown = choices_of(COLUMNS)["status"], choices_of(COLUMNS)["dropdown"]
    assert status.refused("Open") == [] and status.refused("Done") == ["Done"]
    assert status.refused({"label": "Done"}) == ["Done"] and status.refused(3) == []  # an index
    assert status.refused(None) == [] and status.refused("") == []
    assert dropdown.refused("red, green") == ["green"]
    assert dropdown.refused({"labels": ["blue", "pink"]}) == ["pink"]
