"""The polling plan: feeds, SOQL text, Composite packing, deletion windows and delivery ids."""

from __future__ import annotations

import dataclasses
import datetime as dt
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from crmsync.connectors.polling import PollTarget
from crmsync.connectors.salesforce.poll_plan import (
    Subrequest,
    build_feeds,
    delete_delivery_id,
    deleted_subrequest,
    deletion_window,
    field_value,
    first_watermark,
    format_stamp,
    pack,
    poll_soql,
    query_subrequest,
    typeofs,
    upsert_delivery_id,
)
from crmsync.errors import ConfigError

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_targets_on_one_object_share_a_feed_with_each_field_once() -> None:
    leads = PollTarget("leads", "sf", "Lead", ("FirstName", "LastName", "Id"))
    scores = PollTarget("scores", "sf", "lead", ("lastname", "Rating", "Owner.Name"))
    accounts = PollTarget("accounts", "sf", "Account", ())
    feeds = build_feeds([leads, accounts, scores])
    assert [f.object_name for f in feeds] == ["Lead", "Account"]
    assert feeds[0].fields == (
        "Id",
        "FirstName",
        "LastName",
        "Rating",
        "Owner.Name",
        "SystemModstamp",
        "IsDeleted",
    )
    assert feeds[0].targets == (leads, scores) and feeds[0].shared
    assert feeds[1].fields == ("Id", "SystemModstamp", "IsDeleted") and not feeds[1].shared
    assert feeds[1].deleted_key == "Account/deleted"


def test_two_targets_of_one_flow_do_not_make_a_feed_shared() -> None:
    a = PollTarget("leads", "sf", "Lead", ("FirstName",))
    b = PollTarget("leads", "sf", "Lead", ("LastName",))
    assert not build_feeds([a, b])[0].shared


@pytest.mark.parametrize(
    ("object_name", "fields"),
    [
        ("Lead; DELETE", ()),
        ("1Lead", ()),
        ("Lead", ("Name, (SELECT Id FROM Contacts)",)),
        ("Lead", ("a..b",)),
    ],
)
def test_names_that_would_change_the_query_are_refused(object_name: str, fields: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        build_feeds([PollTarget("f", "sf", object_name, fields)])


def test_polling_soql() -> None:
    feed = build_feeds([PollTarget("leads", "sf", "Lead", ("FirstName", "Company"))])[0]
    select = "SELECT Id, FirstName, Company, SystemModstamp, IsDeleted FROM Lead"
    assert poll_soql(feed) == f"{select} ORDER BY SystemModstamp, Id LIMIT 2000"
    since = at("2026-03-01T10:30:05") - dt.timedelta(seconds=2)
    assert poll_soql(feed, since=since) == (
        f"{select} WHERE SystemModstamp > 2026-03-01T10:30:03Z ORDER BY SystemModstamp, Id LIMIT 2000"
    )
    with_ms = at("2026-03-01T10:30:02.999")
    assert "SystemModstamp > 2026-03-01T10:30:02.999Z " in poll_soql(feed, since=with_ms, limit=50)
    assert poll_soql(feed, since=with_ms, limit=50).endswith(" LIMIT 50")


DESCRIBES = {
    "Task": [
        {"name": "WhatId", "relationshipName": "What", "polymorphicForeignKey": True,
         "referenceTo": ["Account", "Opportunity", "Contract"]},
        {"name": "OwnerId", "relationshipName": "Owner", "referenceTo": ["User"]},
    ],
    "Opportunity": [
        {"name": "Name"}, {"name": "Amount"}, {"name": "StageName"},
        {"name": "AccountId", "relationshipName": "Account", "referenceTo": ["Account"]},
    ],
    "Account": [{"name": "Name"}, {"name": "Industry"}],
    "Contract": [{"name": "ContractNumber"}],
}  # fmt: skip


def describe(name: str) -> dict[str, object]:
    return {"fields": DESCRIBES[name]}


def test_fields_beyond_the_name_object_of_a_polymorphic_relationship_are_read_through_typeof() -> None:
    fields = ("Subject", "What.Name", "What.Amount", "What.StageName", "What.Account.Name", "Owner.Email")
    [feed] = build_feeds([PollTarget("requests", "sf", "Task", fields)])
    assert feed.related
    [typeof] = typeofs(feed, describe)
    assert typeof.relationship == "What" and typeof.otherwise == ("Name",)
    assert typeof.whens == (
        ("Account", ("Name",)),
        ("Opportunity", ("Name", "Amount", "StageName", "Account.Name")),
    )
    typed = dataclasses.replace(feed, typeofs=(typeof,))
    soql = poll_soql(typed, since=at("2024-05-01T10:30:00"))
    assert soql.startswith(
        "SELECT Id, Subject, Owner.Email, SystemModstamp, IsDeleted, TYPEOF What WHEN Account THEN Name "
        "WHEN Opportunity THEN Name, Amount, StageName, Account.Name ELSE Name END FROM Task WHERE"
    ), soql


def test_name_object_fields_and_unknown_fields_need_no_typeof() -> None:
    [plain] = build_feeds([PollTarget("requests", "sf", "Task", ("Subject", "What.Name", "What.Type"))])
    assert not plain.related  # no describe needed
    [unknown] = build_feeds([PollTarget("requests", "sf", "Task", ("What.Nonsense", "Owner.Alias"))])
    assert unknown.related and typeofs(unknown, describe) == ()  # the query names the unknown field
    assert "What.Nonsense" in poll_soql(unknown)


def test_continuation_soql_reads_after_the_last_stamp_and_id() -> None:
    feed = build_feeds([PollTarget("leads", "sf", "Lead", ("Company",))])[0]
    soql = poll_soql(feed, after=(at("2026-03-01T10:30:05"), "00Q000000000001AAA"))
    assert soql == (
        "SELECT Id, Company, SystemModstamp, IsDeleted FROM Lead WHERE "
        "(SystemModstamp = 2026-03-01T10:30:05Z AND Id > '00Q000000000001AAA') "
        "OR SystemModstamp > 2026-03-01T10:30:05Z ORDER BY SystemModstamp, Id LIMIT 2000"
    )
    hostile = poll_soql(feed, after=(at("2026-03-01T10:30:05"), "x' OR Name != '"))
    assert "Id > 'x\\' OR Name != \\''" in hostile


def test_query_and_deleted_urls() -> None:
    sub = query_subrequest(3, "SELECT Id FROM Lead WHERE SystemModstamp > 2026-03-01T10:30:03Z")
    assert (sub.kind, sub.feed, sub.is_query) == ("query", 3, True)
    assert sub.url.startswith("queryAll/?q=") and " " not in sub.url
    assert unquote(sub.url.removeprefix("queryAll/?q=")) == (
        "SELECT Id FROM Lead WHERE SystemModstamp > 2026-03-01T10:30:03Z"
    )
    deleted = deleted_subrequest(1, "Lead", at("2026-03-01T10:30:00"), at("2026-03-01T10:32:41.5"))
    assert not deleted.is_query
    parts = urlsplit(deleted.url)
    assert parts.path == "sobjects/Lead/deleted/"
    assert parse_qs(parts.query) == {
        "start": ["2026-03-01T10:30:00+00:00"],
        "end": ["2026-03-01T10:32:41+00:00"],
    }
    assert "+" not in parts.query  # a literal + in a query string reads as a space


def subs(queries: int, others: int) -> list[Subrequest]:
    return [Subrequest("query", i, f"q{i}") for i in range(queries)] + [
        Subrequest("deleted", i, f"d{i}") for i in range(others)
    ]


def test_queries_go_five_to_a_call_and_other_subrequests_fill_the_free_slots() -> None:
    calls = pack(subs(30, 30))
    assert len(calls) == 6
    assert [sum(s.is_query for s in call) for call in calls] == [5] * 6
    assert [len(call) for call in calls] == [25, 15, 5, 5, 5, 5]
    assert [s.url for call in calls for s in call if s.is_query] == [f"q{i}" for i in range(30)]
    assert [s.url for call in calls for s in call if not s.is_query] == [f"d{i}" for i in range(30)]


@pytest.mark.parametrize(
    ("queries", "others", "sizes"),
    [
        (0, 0, []),
        (1, 0, [1]),
        (5, 0, [5]),
        (6, 0, [5, 1]),
        (0, 26, [25, 1]),
        (2, 40, [25, 17]),
        (25, 0, [5] * 5),
    ],
)
def test_packing_limits(queries: int, others: int, sizes: list[int]) -> None:
    calls = pack(subs(queries, others))
    assert [len(call) for call in calls] == sizes
    assert all(sum(s.is_query for s in call) <= 5 for call in calls)


def test_packing_with_other_limits() -> None:
    assert [len(c) for c in pack(subs(30, 0), size=25, max_queries=25)] == [25, 5]
    assert [len(c) for c in pack(subs(3, 3), size=2, max_queries=5)] == [2, 2, 2]
    with pytest.raises(ValueError):
        pack(subs(1, 0), max_queries=0)


def test_a_deletion_window_is_due_once_a_whole_minute_has_passed() -> None:
    mark = at("2026-03-01T10:30:00")
    assert deletion_window(mark, at("2026-03-01T10:30:59")) is None
    assert deletion_window(mark, at("2026-03-01T10:31:00")) == (mark, at("2026-03-01T10:31:00"))
    # the minute the mark falls in counts from its start (windows have whole minutes)
    assert deletion_window(at("2026-03-01T10:30:45"), at("2026-03-01T10:31:10")) == (
        mark,
        at("2026-03-01T10:31:10"),
    )


def test_a_deletion_window_never_starts_past_the_retention() -> None:
    now = at("2026-03-20T08:15:30")
    start, end = deletion_window(at("2026-02-01T00:00:00"), now) or (None, None)
    assert end == now
    assert start == at("2026-03-05T08:17:00")  # 15 days back, two minutes inside


def test_watermark_texts() -> None:
    assert format_stamp(at("2026-03-01T10:30:05.123456")) == "2026-03-01T10:30:05.123+0000"
    plus_one = dt.datetime(2026, 3, 1, 11, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert format_stamp(plus_one) == "2026-03-01T10:30:05.000+0000"
    # a poller starting now reads from the start of the current second: now+overlap-1ms-overlap
    assert first_watermark(at("2026-03-01T10:30:05.700"), dt.timedelta(seconds=2)) == (
        "2026-03-01T10:30:06.999+0000"
    )


def test_field_values_walk_parents_and_ignore_case() -> None:
    row = {"Id": "00Q1", "Name": "Ada", "Owner": {"attributes": {}, "Name": "Grace"}, "Account": None}
    assert field_value(row, "Name") == "Ada"
    assert field_value(row, "name") == "Ada"
    assert field_value(row, "Owner.Name") == "Grace"
    assert field_value(row, "owner.name") == "Grace"
    assert field_value(row, "Account.Name") is None
    assert field_value(row, "Missing__c") is None


def test_delivery_ids() -> None:
    stamp = "2026-03-01T10:30:05.000+0000"
    one = upsert_delivery_id("00Q000000000001AAA", stamp, {"Status": "Open", "Name": "Ada"}, None)
    assert one.startswith(f"sf:00Q000000000001AAA:{stamp}:")
    # the same values in any order: the same id (a row read again is a duplicate) ...
    assert upsert_delivery_id("00Q000000000001AAA", stamp, {"Name": "Ada", "Status": "Open"}, None) == one
    # ... other values in the same second: another id (a second edit is not lost)
    assert upsert_delivery_id("00Q000000000001AAA", stamp, {"Name": "Ada", "Status": "Won"}, None) != one
    assert upsert_delivery_id("00Q000000000001AAA", stamp, {"Status": "Open", "Name": "Ada"}, "leads") == (
        f"{one}:leads"
    )
    assert delete_delivery_id("00Q000000000001AAA", None) == "sf-del:00Q000000000001AAA"
    assert delete_delivery_id("00Q000000000001AAA", "leads") == "sf-del:00Q000000000001AAA:leads"
    assert len(upsert_delivery_id("a" * 18, stamp, {}, "f" * 100)) <= 255
