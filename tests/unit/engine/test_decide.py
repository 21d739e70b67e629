"""The values creating a record writes: the same whichever path (webhook, preview, sync) saw it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from crmsync.config import load_config
from crmsync.engine.decide import creation, needs_full_read, source_fields
from crmsync.engine.flows import FlowRuntime
from crmsync.engine.preview import compare_two_way

RECIPE = Path(__file__).resolve().parents[3] / "examples" / "monday-salesforce" / "crmsync.yaml"
#: what monday's create webhook carries for a lead typed in with every Lead column but no close date
WEBHOOK = {
    "name": "Grace Hopper",
    "status": "Qualified",
    "email": "grace@navy.example",
    "phone": "+15550004444",
    "text": "Navy",
}


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
    return FlowRuntime("leads", load_config(RECIPE, environ=env).flows["leads"])


def test_the_related_objects_fields_count_as_needed_so_a_webhook_without_them_reads_the_item(
    leads: FlowRuntime,
) -> None:
    assert {"date4", "numbers", "text", "name"} <= source_fields(leads)
    assert needs_full_read(leads, WEBHOOK)
    assert not needs_full_read(leads, {**WEBHOOK, "numbers": None, "date4": None})


def test_a_field_the_webhook_does_not_carry_is_empty_so_the_close_dates_default_applies(
    leads: FlowRuntime,
) -> None:
    made = creation(leads, "101", WEBHOOK)
    opportunity = next(r for r in made.related if r.object_name == "Opportunity")
    today = dt.datetime.now(dt.UTC).date()
    assert opportunity.fields["CloseDate"] in {(today + dt.timedelta(days=d)).isoformat() for d in (30, 31)}
    assert opportunity.refs == {"AccountId": "Account"}
    assert made.fields["LastName"] == "Hopper" and made.fields["Email"] == "grace@navy.example"


def test_preview_shows_the_values_the_worker_creates(leads: FlowRuntime) -> None:
    full_read = {**WEBHOOK, "numbers": None, "date4": None, "person": None}
    made = creation(leads, "101", WEBHOOK)
    shown = compare_two_way(leads, "101", full_read, target_id=None, current=None)
    assert shown.action == "create"
    assert {c.field: c.new for c in shown.fields} == made.fields
    assert [(r.object_name, {c.field: c.new for c in r.fields}) for r in shown.related] == [
        (r.object_name, r.fields) for r in made.related
    ]


def _at(second: float) -> dt.datetime:
    return dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC) + dt.timedelta(seconds=second)


def test_a_late_read_of_a_value_held_until_crmsync_wrote_over_it_is_not_news() -> None:
    from crmsync.engine.decide import news

    # crmsync wrote Phone at 38.4 s; the field was empty before. A poll returns a version stamped
    # 38 s (Salesforce's whole second) that still shows it empty: a superseded version, not an edit.
    known = {"Phone": ["+1555", _at(38.4).isoformat(), [[None, _at(38.4).isoformat()]]]}
    assert news(known, {"Phone": None}, _at(38)).fields == {}
    # the same value read well after crmsync's write is somebody clearing the field: news
    assert news(known, {"Phone": None}, _at(45)).fields == {"Phone": None}


def test_an_older_value_counts_as_superseded_until_the_next_one_replaced_it() -> None:
    from crmsync.engine.decide import news

    known = {
        "Stage": ["C", _at(30).isoformat(), [["B", _at(20).isoformat()], ["A", _at(10).isoformat()]]],
    }
    assert news(known, {"Stage": "B"}, _at(25)).fields == {}  # B held from 20 s until 30 s
    assert news(known, {"Stage": "A"}, _at(15)).fields == {}  # A held from 10 s until 20 s
    assert news(known, {"Stage": "A"}, _at(31.5)).fields == {"Stage": "A"}  # A was gone by then: an edit


def test_a_value_read_at_the_very_moment_the_next_one_came_is_news() -> None:
    from crmsync.engine.decide import news

    # closed at 10.5 s, reopened in the same millisecond stamp: the two cannot be ordered by time,
    # so the later arrival is taken as it comes (an edit), not as a late read
    known = {"closed": [True, _at(10.5).isoformat(), [[False, _at(1.5).isoformat()]]]}
    assert news(known, {"closed": False}, _at(10.5)).fields == {"closed": False}


def test_a_folded_change_keeps_each_fields_own_time_so_a_late_echo_inside_it_is_not_news(
    leads: FlowRuntime,
) -> None:
    from crmsync.engine.decide import ChangeTime, change_time, field_time, news

    # crmsync wrote company "v1" on the board at 10 s and "v2" at 20 s; the echo of "v1" (its
    # webhook, stamped 10.2 s) was held back, then queued just before a person's phone edit at 30 s,
    # and the two were folded into one change of the item
    parts = [
        ("upsert", {"text": "v1", "_at": _at(10.2).isoformat()}, _at(29)),
        ("upsert", {"phone": "+1999", "_at": _at(30).isoformat()}, _at(30.1)),
    ]
    folded = {"text": "v1", "phone": "+1999", "_at": _at(30).isoformat()}
    at = change_time(leads, "source", folded, _at(29), parts)
    assert isinstance(at, ChangeTime) and at == _at(30)
    assert field_time(at, "text") == _at(10.2) and field_time(at, "phone") == _at(30)
    assert field_time(at, "Company") == _at(10.2)  # the same time under the field's Salesforce name
    known = {
        "text": ["v2", _at(20).isoformat(), [["v1", _at(10).isoformat()]], _at(20.1).isoformat()],
        "phone": ["+1000", _at(5).isoformat()],
    }
    assert news(known, {"text": "v1", "phone": "+1999"}, at).fields == {"phone": "+1999"}
    # stamped as a whole with the newest part's time, the echo would have passed for an edit at 30 s
    assert news(known, {"text": "v1", "phone": "+1999"}, _at(30)).fields == {"text": "v1", "phone": "+1999"}


def test_a_change_folded_after_a_delete_times_only_what_came_after_it(leads: FlowRuntime) -> None:
    from crmsync.engine.decide import change_time, field_time

    parts = [
        ("upsert", {"text": "gone", "_at": _at(1).isoformat()}, _at(1)),
        ("delete", {}, _at(2)),
        ("upsert", {"phone": "+1"}, _at(3)),
    ]
    at = change_time(leads, "source", {"phone": "+1"}, _at(1), parts)
    assert at == _at(3) and field_time(at, "phone") == _at(3) and field_time(at, "text") == _at(3)
    assert change_time(leads, "source", {"phone": "+1", "_at": _at(7).isoformat()}, _at(9)) == _at(7)


def test_a_value_crmsync_set_out_to_write_is_its_own_echo_until_noted_as_synced() -> None:
    from crmsync.engine.decide import news

    # Phone was synced as "+1000" at 5 s; at 20 s crmsync set out to write "+1232" there, and died
    # (or another worker read the record) before noting it as synced: the read showing "+1232"
    # stamped 21 s is crmsync's own write, not a person's edit to copy back
    known = {"Phone": ["+1000", _at(5).isoformat(), [], None, [["+1232", _at(20).isoformat()]]]}
    assert news(known, {"Phone": "+1232"}, _at(21)).fields == {}
    assert news(known, {"Phone": "+1777"}, _at(21)).fields == {"Phone": "+1777"}  # somebody's edit
    # long after, the same value is somebody's edit (the write was made again, or given up, by then)
    assert news(known, {"Phone": "+1232"}, _at(20 + 7 * 3600)).fields == {"Phone": "+1232"}


def test_a_value_crmsync_wrote_replaced_the_one_before_when_it_was_written_not_when_it_was_made() -> None:
    from crmsync.engine.decide import news

    # on the board: "v80" written by crmsync at 51 s; "v105" (made in Salesforce at 46 s) written
    # at 54 s; "v179" (made at 50 s) written at 61 s. A read of the board taken at 52 s shows "v80":
    # the board held it until 54 s, whatever time "v105" was made elsewhere
    known = {
        "text": [
            "v179",
            _at(50).isoformat(),
            [
                ["v105", _at(46).isoformat(), _at(54).isoformat()],
                ["v80", _at(33).isoformat(), _at(51).isoformat()],
            ],
            _at(61).isoformat(),
        ]
    }
    assert news(known, {"text": "v80"}, _at(52)).fields == {}
    assert news(known, {"text": "v80"}, _at(56)).fields == {"text": "v80"}  # gone by then: an edit


def test_a_write_crmsync_only_set_out_to_make_does_not_end_the_value_before_it() -> None:
    from crmsync.engine.decide import news

    # on the board: "v0" since 0 s; crmsync set out to write "v1" at 15 s (the call failed: it may or
    # may not have landed), then wrote "v2" at 55 s. A read taken at 22 s shows "v0": it was there
    # until 55 s for all crmsync knows; "v1" read at 30 s may be the failed call's write after all
    known = {
        "text": [
            "v2",
            _at(10).isoformat(),
            [["v1", _at(15).isoformat(), None, True], ["v0", _at(0).isoformat()]],
            _at(55).isoformat(),
        ]
    }
    assert news(known, {"text": "v0"}, _at(22)).fields == {}
    assert news(known, {"text": "v1"}, _at(30)).fields == {}
    assert news(known, {"text": "v0"}, _at(60)).fields == {"text": "v0"}  # after "v2" landed: an edit
    assert news(known, {"text": "v1"}, _at(60)).fields == {"text": "v1"}
