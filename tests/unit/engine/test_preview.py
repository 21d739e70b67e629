"""The comparison behind ``crmsync preview``: a source record against its linked target records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crmsync.config import load_config
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.preview import FieldChange, compare_two_way, differences, same_value
from crmsync.errors import FixTheData

RECIPE = Path(__file__).resolve().parents[3] / "examples" / "monday-salesforce" / "crmsync.yaml"
AT = "2025-01-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def leads(tmp_path_factory: pytest.TempPathFactory) -> FlowRuntime:
    key = tmp_path_factory.mktemp("keys") / "jwt.pem"
    key.write_text("unused")
    env = {
        "SALESFORCE_INSTANCE_URL": "https://127.0.0.1:1",
        "SALESFORCE_CLIENT_ID": "client",
        "SALESFORCE_USERNAME": "user@example.com",
        "SALESFORCE_JWT_KEY_FILE": str(key),
        "MONDAY_TOKEN": "token",
    }
    cfg = load_config(RECIPE, environ=env)
    return FlowRuntime("leads", cfg.flows["leads"])


JANE: dict[str, Any] = {
    "name": "Jane Cooper",
    "email": "jane@acme.example",
    "phone": "+15550001111",
    "text": "Acme Corp",
    "status": "Qualified",
    "numbers": 12000,
    "date4": "2025-06-30",
}
LEAD = {
    "Id": "00Q000000000001AAA",
    "FirstName": "Jane",
    "LastName": "Cooper",
    "Email": "jane@acme.example",
    "Phone": "+15550001111",
    "Company": "Acme Corp",
    "Status": "Working - Contacted",
}


@pytest.mark.parametrize(
    ("current", "new", "same"),
    [
        (12000.0, "12000", True),
        (12000, 12000.0, True),
        (None, "", True),
        ("", None, True),
        ("Acme ", "Acme", True),
        (True, "true", True),
        (False, "true", False),
        ("Acme", "Acme Corp", False),
        (None, "x", False),
        (1, 2, False),
    ],
)
def test_same_value_across_representations(current: Any, new: Any, same: bool) -> None:
    assert same_value(current, new) is same


def test_differences_lists_only_changed_fields_with_current_and_new() -> None:
    assert differences({"A": 1, "B": "x", "C": None}, {"A": 1.0, "B": "y"}) == (FieldChange("B", "y", "x"),)


def test_an_unlinked_record_matching_when_would_be_created_with_its_related_objects(
    leads: FlowRuntime,
) -> None:
    p = compare_two_way(leads, "1", JANE, target_id=None, current=None, label="Jane Cooper")
    assert p.action == "create" and p.target_id is None and p.label == "Jane Cooper"
    assert {c.field: c.new for c in p.fields} == {
        "LastName": "Cooper",
        "FirstName": "Jane",
        "Email": "jane@acme.example",
        "Phone": "+15550001111",
        "Company": "Acme Corp",
        "Status": "Working - Contacted",
    }
    assert all(c.current is None for c in p.fields)
    assert [(r.object_name, r.action) for r in p.related] == [
        ("Account", "create"),
        ("Contact", "create"),
        ("Opportunity", "create"),
    ]
    opportunity = {c.field: c.new for c in p.related[2].fields}
    assert opportunity["StageName"] == "Qualification" and opportunity["Name"] == "Acme Corp"


def test_an_unlinked_record_not_matching_when_is_skipped_with_the_reason(leads: FlowRuntime) -> None:
    p = compare_two_way(leads, "2", {**JANE, "status": "New"}, target_id=None, current=None)
    assert p.action == "skipped" and not p.fields
    assert p.reason == "status is 'New': does not match the flow's when"


def test_a_linked_record_with_equal_mapped_fields_is_unchanged(leads: FlowRuntime) -> None:
    p = compare_two_way(leads, "1", JANE, target_id=LEAD["Id"], current=LEAD)
    assert p.action == "unchanged" and p.fields == () and p.target_id == LEAD["Id"]


def test_a_value_the_transforms_refuse_raises_fix_the_data(leads: FlowRuntime) -> None:
    # the worker would dead-letter it; the preview lists it as refused with this message
    with pytest.raises(FixTheData, match="'Lost' is not in the value map"):
        compare_two_way(leads, "1", {**JANE, "status": "Lost"}, target_id=LEAD["Id"], current=LEAD)


def test_a_linked_record_with_a_changed_field_would_be_updated_from_current_to_new(
    leads: FlowRuntime,
) -> None:
    p = compare_two_way(leads, "1", {**JANE, "name": "Jane Smith"}, target_id=LEAD["Id"], current=LEAD)
    assert p.action == "update"
    assert p.fields == (FieldChange("LastName", "Cooper", "Smith"),)


def test_related_records_are_compared_and_their_updates_make_an_update(leads: FlowRuntime) -> None:
    account = {"Id": "001A", "Name": "Acme Corp"}
    opportunity = {"Id": "006A", "Name": "Acme Corp", "Amount": 12000.0, "StageName": "Qualification"}
    related = {"Account": ("001A", account), "Opportunity": ("006A", opportunity)}
    p = compare_two_way(
        leads, "1", {**JANE, "status": "Quote"}, target_id=LEAD["Id"], current=LEAD, related=related
    )
    assert p.action == "update" and p.fields == ()  # the Lead's Status maps to the same value
    by_object = {r.object_name: r for r in p.related}
    assert by_object["Account"].action == "unchanged"
    assert by_object["Opportunity"].action == "update"
    changes = {c.field: (c.current, c.new) for c in by_object["Opportunity"].fields}
    assert changes["StageName"] == ("Qualification", "Proposal/Price Quote")


def test_a_field_changed_only_in_the_target_since_the_last_sync_goes_back_to_the_source(
    leads: FlowRuntime,
) -> None:
    current = {**LEAD, "Company": "Acme Holdings"}
    source_shadow = {"text": ["Acme Corp", AT]}
    target_shadow = {"Company": ["Acme Corp", AT]}
    p = compare_two_way(
        leads,
        "1",
        JANE,
        target_id=LEAD["Id"],
        current=current,
        source_shadow=source_shadow,
        target_shadow=target_shadow,
    )
    assert p.action == "update"
    assert p.fields == (FieldChange("text", "Acme Corp", "Acme Holdings", "to_source"),)


def test_a_field_changed_on_the_source_goes_to_the_target_even_if_the_target_changed_too(
    leads: FlowRuntime,
) -> None:
    current = {**LEAD, "Company": "Acme Holdings"}
    p = compare_two_way(
        leads,
        "1",
        {**JANE, "text": "Acme Group"},
        target_id=LEAD["Id"],
        current=current,
        source_shadow={"text": ["Acme Corp", AT]},
        target_shadow={"Company": ["Acme Corp", AT]},
    )
    assert p.fields == (FieldChange("Company", "Acme Holdings", "Acme Group"),)


def test_a_one_way_field_never_goes_back_even_when_only_the_target_changed(leads: FlowRuntime) -> None:
    current = {**LEAD, "LastName": "Smith"}  # name → LastName is one way (split_name)
    p = compare_two_way(
        leads,
        "1",
        JANE,
        target_id=LEAD["Id"],
        current=current,
        source_shadow={"name": ["Jane Cooper", AT]},
        target_shadow={"LastName": ["Cooper", AT]},
    )
    assert p.fields == (FieldChange("LastName", "Smith", "Cooper"),)


def test_a_link_to_a_record_the_target_no_longer_has_is_refused(leads: FlowRuntime) -> None:
    p = compare_two_way(leads, "1", JANE, target_id="00Qgone", current=None)
    assert p.action == "refused" and p.reason is not None and "00Qgone" in p.reason
