"""The comparison behind ``crmsync preview``: a source record against its linked target records."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from crmsync.config import load_config
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.preview import FieldChange, compare_two_way
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


#: what was last synced of JANE on each side, as the worker remembers it (``[value, at]``)
SYNCED_SOURCE = {name: [value, AT] for name, value in JANE.items()}
SYNCED_TARGET = {name: [value, AT] for name, value in LEAD.items() if name != "Id"}
LATER = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)


def linked(leads: FlowRuntime, source: dict[str, Any], **kw: Any) -> Any:
    kw.setdefault("source_shadow", SYNCED_SOURCE)
    kw.setdefault("target_shadow", SYNCED_TARGET)
    kw.setdefault("current", LEAD)
    return compare_two_way(leads, "1", source, target_id=LEAD["Id"], at=LATER, target_at=LATER, **kw)


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


def test_a_linked_record_the_source_did_not_change_since_the_last_sync_is_unchanged(
    leads: FlowRuntime,
) -> None:
    p = linked(leads, JANE)
    assert p.action == "unchanged" and p.fields == () and p.target_id == LEAD["Id"]
    assert p.reason == "no news (echo or unchanged)"


def test_a_value_spelled_differently_from_the_last_synced_one_is_news_as_the_worker_sees_it(
    leads: FlowRuntime,
) -> None:
    # a loose comparison with the target ("Acme Corp " is "Acme Corp") would call it unchanged;
    # the worker compares strictly with what it synced, and writes it
    p = linked(leads, {**JANE, "text": "Acme Corp "})
    assert p.action == "update"
    assert p.fields == (FieldChange("Company", "Acme Corp", "Acme Corp "),)


def test_a_linked_record_never_synced_is_written_whole(leads: FlowRuntime) -> None:
    p = linked(leads, JANE, source_shadow=None)
    assert p.action == "update"
    assert {c.field for c in p.fields} == {"LastName", "FirstName", "Email", "Phone", "Company", "Status"}


def test_a_value_the_transforms_refuse_raises_fix_the_data(leads: FlowRuntime) -> None:
    # the worker would dead-letter it; the preview lists it as refused with this message
    with pytest.raises(FixTheData, match="'Lost' is not in the value map"):
        linked(leads, {**JANE, "status": "Lost"})


def test_a_linked_record_with_a_changed_field_would_be_updated_from_current_to_new(
    leads: FlowRuntime,
) -> None:
    p = linked(leads, {**JANE, "name": "Jane Smith"})
    assert p.action == "update"
    assert p.fields == (FieldChange("LastName", "Cooper", "Smith"), FieldChange("FirstName", "Jane", "Jane"))


def test_linked_related_records_get_the_fields_that_changed(leads: FlowRuntime) -> None:
    account = {"Id": "001A", "Name": "Acme Corp"}
    opportunity = {"Id": "006A", "Name": "Acme Corp", "Amount": 12000.0, "StageName": "Qualification"}
    related = {"Account": ("001A", account), "Opportunity": ("006A", opportunity)}
    p = linked(leads, {**JANE, "status": "Quote"}, related=related)
    assert p.action == "update" and p.fields == (
        FieldChange("Status", "Working - Contacted", "Working - Contacted"),
    )
    by_object = {r.object_name: r for r in p.related}
    assert by_object["Account"].action == "unchanged"
    assert by_object["Opportunity"].action == "update"
    assert by_object["Opportunity"].fields == (
        FieldChange("StageName", "Qualification", "Proposal/Price Quote"),
    )


def test_a_field_changed_only_in_the_target_since_the_last_sync_goes_back_to_the_source(
    leads: FlowRuntime,
) -> None:
    p = linked(leads, JANE, current={**LEAD, "Company": "Acme Holdings"})
    assert p.action == "update"
    assert p.fields == (FieldChange("text", "Acme Corp", "Acme Holdings", "to_source"),)


@pytest.mark.parametrize(
    ("source_at", "target_at", "expected"),
    [
        (LATER + dt.timedelta(minutes=1), LATER, (FieldChange("Company", "Acme Holdings", "Acme Group"),)),
        (
            LATER,
            LATER + dt.timedelta(minutes=1),
            (FieldChange("text", "Acme Group", "Acme Holdings", "to_source"),),
        ),
    ],
)
def test_a_field_both_sides_changed_is_settled_by_the_flow_s_policy(
    leads: FlowRuntime, source_at: dt.datetime, target_at: dt.datetime, expected: tuple[FieldChange, ...]
) -> None:
    p = compare_two_way(
        leads,
        "1",
        {**JANE, "text": "Acme Group"},
        target_id=LEAD["Id"],
        current={**LEAD, "Company": "Acme Holdings"},
        source_shadow=SYNCED_SOURCE,
        target_shadow=SYNCED_TARGET,
        at=source_at,
        target_at=target_at,
    )
    assert p.action == "update" and p.fields == expected  # newest_wins
    assert p.reason is not None and "conflict on text/Company" in p.reason


def test_a_one_way_field_never_goes_back_even_when_only_the_target_changed(leads: FlowRuntime) -> None:
    p = linked(leads, JANE, current={**LEAD, "LastName": "Smith"})
    assert p.action == "unchanged" and p.fields == ()


def test_a_link_to_a_record_the_target_no_longer_has_is_refused(leads: FlowRuntime) -> None:
    p = compare_two_way(leads, "1", JANE, target_id="00Qgone", current=None)
    assert p.action == "refused" and p.reason is not None and "00Qgone" in p.reason


def test_an_unlinked_record_whose_counterpart_the_match_step_finds_is_adopted_as_an_update(
    leads: FlowRuntime,
) -> None:
    existing = {**LEAD, "LastName": "Cooper-Smith"}
    p = compare_two_way(leads, "1", JANE, target_id=LEAD["Id"], current=existing, matched=True)
    assert p.action == "update" and p.target_id == LEAD["Id"]
    assert FieldChange("LastName", "Cooper-Smith", "Cooper") in p.fields
    assert [r.action for r in p.related] == ["create", "create", "create"]  # made with it, as the worker does
    assert p.reason is not None and p.reason.startswith("matched Lead 00Q000000000001AAA")
