"""The gql client, unmodified, against the Monday.com emulator: items, column values, cursors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.requests import RequestsHTTPTransport

from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve


@pytest.fixture(scope="module")
def emulator() -> Iterator[MondayEmulator]:
    em = MondayEmulator(retry_delays=(0.05,))
    with serve(em):
        yield em


@pytest.fixture
def client(emulator: MondayEmulator) -> Iterator[Client]:
    emulator.seed("demo")
    transport = RequestsHTTPTransport(
        url=emulator.credentials()["MONDAY_API_URL"],
        headers={"Authorization": emulator.token, "API-Version": "2026-10"},
        retries=0,
    )
    with Client(transport=transport, fetch_schema_from_transport=True) as session:
        yield session  # type: ignore[misc]


def run(client: Any, query: str, **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = client.execute(GraphQLRequest(query, variable_values=variables or None))
    return result


CREATE = """
mutation ($board: ID!, $name: String!, $group: String, $values: JSON) {
  create_item(board_id: $board, item_name: $name, group_id: $group, column_values: $values) {
    id name group { id }
    column_values { id text value type ... on StatusValue { index label } }
  }
}
"""


def test_create_item_with_column_values_of_every_type(client: Any, emulator: MondayEmulator) -> None:
    leads = emulator.board_id("Leads")
    ada = 58_000_002
    values = {
        "status": {"label": "Qualified"},
        "email": {"email": "kim@acme.example", "text": "Kim"},
        "phone": {"phone": "+15550001111", "countryShortName": "US"},
        "text": "Acme",
        "numbers": "1200.5",
        "date4": {"date": "2026-11-30", "time": "10:30:00"},
        "person": {"personsAndTeams": [{"id": ada, "kind": "person"}]},
        "link": {"url": "https://acme.example", "text": "Acme site"},
    }
    data = run(client, CREATE, board=leads, name="Kim Lee", group="topics", values=json.dumps(values))
    item = data["create_item"]
    assert item["name"] == "Kim Lee" and item["group"]["id"] == "topics"
    assert isinstance(item["id"], str) and item["id"].isdigit()
    by_id = {cv["id"]: cv for cv in item["column_values"]}
    assert by_id["status"]["text"] == "Qualified" and by_id["status"]["label"] == "Qualified"
    assert by_id["status"]["index"] == 1 and by_id["status"]["type"] == "status"
    assert json.loads(by_id["status"]["value"])["index"] == 1
    assert by_id["email"]["text"] == "kim@acme.example"
    assert by_id["phone"]["text"] == "+15550001111"
    assert by_id["text"]["value"] == '"Acme"' and by_id["text"]["text"] == "Acme"
    assert by_id["numbers"]["value"] == '"1200.5"' and by_id["numbers"]["text"] == "1200.5"
    assert json.loads(by_id["date4"]["value"])["date"] == "2026-11-30"
    assert by_id["date4"]["text"] == "2026-11-30 10:30"
    assert by_id["person"]["text"] == "Ada Lovelace"
    assert by_id["link"]["text"] == "Acme site - https://acme.example"
    assert by_id["text_mkr1lead"]["value"] is None and by_id["text_mkr1lead"]["text"] == ""
    assert emulator.item(item["id"])["columns"]["status"] == "Qualified"


def test_deals_board_types_and_board_relation(client: Any, emulator: MondayEmulator) -> None:
    deals = emulator.board_id("Deals")
    lead = emulator.items(emulator.board_id("Leads"))[0]["id"]
    values = {
        "board_relation_mkr1": {"item_ids": [int(lead)]},
        "dropdown": {"labels": ["Ads", "Support"]},
        "checkbox": {"checked": "true"},
        "long_text": {"text": "Long\nnotes"},
    }
    item = run(client, CREATE, board=deals, name="New deal", values=json.dumps(values))["create_item"]
    query = """
    query ($ids: [ID!]) {
      items(ids: $ids) {
        column_values(ids: ["board_relation_mkr1", "dropdown", "checkbox", "long_text"]) {
          id text value
          ... on BoardRelationValue { linked_item_ids display_value }
          ... on DropdownValue { values { id label } }
          ... on CheckboxValue { checked }
        }
      }
    }
    """
    cvs = {cv["id"]: cv for cv in run(client, query, ids=[item["id"]])["items"][0]["column_values"]}
    relation = cvs["board_relation_mkr1"]
    assert relation["value"] is None and relation["linked_item_ids"] == [lead]
    assert relation["text"] == relation["display_value"] == "Jane Cooper"
    assert [v["label"] for v in cvs["dropdown"]["values"]] == ["Ads", "Support"]
    assert cvs["dropdown"]["text"] == "Ads, Support"
    assert cvs["checkbox"]["checked"] is True and cvs["checkbox"]["text"] == "v"
    assert cvs["long_text"]["text"] == "Long\nnotes"


def test_change_values_rename_clear_and_simple(client: Any, emulator: MondayEmulator) -> None:
    leads = emulator.board_id("Leads")
    item_id = emulator.items(leads)[0]["id"]
    change = """
    mutation ($b: ID!, $i: ID, $v: JSON!) {
      change_multiple_column_values(board_id: $b, item_id: $i, column_values: $v) { id name }
    }
    """
    values = json.dumps({"name": "Jane C. Cooper", "status": {"index": 4}, "numbers": None, "text": ""})
    assert run(client, change, b=leads, i=item_id, v=values)["change_multiple_column_values"]["name"] == (
        "Jane C. Cooper"
    )
    seen = emulator.item(item_id)
    assert seen["columns"]["status"] == "Follow-up"
    assert seen["values"]["numbers"] is None and seen["columns"]["text"] == ""

    single = """
    mutation ($b: ID!, $i: ID, $v: JSON!) {
      change_column_value(board_id: $b, item_id: $i, column_id: "text", value: $v) { id }
    }
    """
    run(client, single, b=leads, i=item_id, v=json.dumps("Acme Holdings"))
    simple = """
    mutation ($b: ID!, $i: ID) {
      s: change_simple_column_value(board_id: $b, item_id: $i, column_id: "status", value: "Quote") { id }
      d: change_simple_column_value(board_id: $b, item_id: $i, column_id: "date4", value: "2027-02-01") { id }
    }
    """
    run(client, simple, b=leads, i=item_id)
    seen = emulator.item(item_id)
    assert seen["columns"]["text"] == "Acme Holdings"
    assert seen["columns"]["status"] == "Quote" and seen["columns"]["date4"] == "2027-02-01"


def test_move_archive_delete_and_update(client: Any, emulator: MondayEmulator) -> None:
    leads = emulator.board_id("Leads")
    first, second = (i["id"] for i in emulator.items(leads)[:2])
    batch = """
    mutation ($a: ID, $b: ID) {
      m: move_item_to_group(item_id: $a, group_id: "group_mkr1qual") { id group { id title } }
      u: create_update(item_id: $a, body: "Called, <b>interested</b>") { id text_body }
      x: archive_item(item_id: $b) { id state }
    }
    """
    data = run(client, batch, a=first, b=second)
    assert data["m"]["group"] == {"id": "group_mkr1qual", "title": "Qualified"}
    assert data["u"]["text_body"] == "Called, interested"
    assert data["x"]["state"] == "archived"
    deleted = run(client, "mutation ($a: ID) { delete_item(item_id: $a) { id state } }", a=first)
    assert deleted["delete_item"]["state"] == "deleted"
    states = run(client, "query ($ids: [ID!]) { items(ids: $ids) { id state } }", ids=[first, second])
    assert {i["id"]: i["state"] for i in states["items"]} == {first: "deleted", second: "archived"}
    active = run(
        client, "query ($ids: [ID!]) { items(ids: $ids, exclude_nonactive: true) { id } }", ids=[first]
    )
    assert active["items"] == []
    page = run(
        client, "query ($b: [ID!]) { boards(ids: $b) { items_page(limit: 100) { items { id } } } }", b=[leads]
    )
    assert {i["id"] for i in page["boards"][0]["items_page"]["items"]}.isdisjoint({first, second})


PAGE = """
query ($b: [ID!], $limit: Int!) {
  boards(ids: $b) { items_page(limit: $limit) { cursor items { id name } } }
}
"""
NEXT = (
    "query ($c: String!, $limit: Int!) { next_items_page(cursor: $c, limit: $limit) { cursor items { id } } }"
)


def test_pages_through_items_with_cursors(client: Any, emulator: MondayEmulator) -> None:
    leads = emulator.board_id("Leads")
    created = []
    for n in range(23):
        created.append(emulator.ui_create_item(leads, f"Lead {n:02}", values={"text": f"Co {n}"}))
    emulator.dispatcher.wait_idle()
    first = run(client, PAGE, b=[leads], limit=10)["boards"][0]["items_page"]
    seen = [i["id"] for i in first["items"]]
    cursor = first["cursor"]
    pages = 1
    while cursor:
        page = run(client, NEXT, c=cursor, limit=10)["next_items_page"]
        seen += [i["id"] for i in page["items"]]
        cursor = page["cursor"]
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 28
    assert set(created) <= set(seen)


def test_items_page_query_params_and_lookup_by_value(client: Any, emulator: MondayEmulator) -> None:
    leads = emulator.board_id("Leads")
    query = """
    query ($b: [ID!], $q: ItemsQuery) {
      boards(ids: $b) { items_page(limit: 50, query_params: $q) { items { name } } }
    }
    """
    params = {"rules": [{"column_id": "status", "compare_value": [1, 2], "operator": "any_of"}]}
    names = [i["name"] for i in run(client, query, b=[leads], q=params)["boards"][0]["items_page"]["items"]]
    assert sorted(names) == ["Brooklyn Simmons", "Cameron Williamson"]
    params = {
        "rules": [{"column_id": "numbers", "compare_value": [10000], "operator": "greater_than_or_equals"}],
        "order_by": [{"column_id": "numbers", "direction": "desc"}],
    }
    names = [i["name"] for i in run(client, query, b=[leads], q=params)["boards"][0]["items_page"]["items"]]
    assert names == ["Cameron Williamson", "Jane Cooper"]
    params = {"rules": [{"column_id": "date4", "compare_value": [], "operator": "is_empty"}]}
    names = [i["name"] for i in run(client, query, b=[leads], q=params)["boards"][0]["items_page"]["items"]]
    assert sorted(names) == ["Brooklyn Simmons", "Esther Howard", "Jane Cooper"]
    emulator.ui_rename_item(emulator.items(leads)[2]["id"], "Esther H.")
    params = {
        "rules": [
            {
                "column_id": "__last_updated__",
                "compare_value": ["EXACT", "2026-10-02T00:00:00Z"],
                "operator": "greater_than_or_equals",
                "compare_attribute": "UPDATED_AT",
            }
        ],
        "order_by": [{"column_id": "__last_updated__", "direction": "asc"}],
    }
    names = [i["name"] for i in run(client, query, b=[leads], q=params)["boards"][0]["items_page"]["items"]]
    assert names == ["Esther H."]
    by_value = """
    query ($b: ID!) {
      items_page_by_column_values(board_id: $b, limit: 5,
        columns: [{column_id: "email", column_values: ["wade@globex.example", "nobody@x.example"]}]) {
        cursor items { name }
      }
    }
    """
    found = run(client, by_value, b=leads)["items_page_by_column_values"]
    assert found == {"cursor": None, "items": [{"name": "Wade Warren"}]}


def test_board_shape_and_meta(client: Any, emulator: MondayEmulator) -> None:
    query = """
    { boards { id name state board_kind columns { id title type settings_str }
               groups { id title color position } }
      me { id name } version { kind value } versions { kind value }
      complexity { before after query reset_in_x_seconds } }
    """
    data = run(client, query)
    names = [b["name"] for b in data["boards"]]
    assert names == ["Leads", "Deals"]
    leads = data["boards"][0]
    titles = [c["title"] for c in leads["columns"]]
    assert titles[:3] == ["Name", "Status", "Email"] and "Salesforce Opportunity Id" in titles
    status = next(c for c in leads["columns"] if c["id"] == "status")
    labels = json.loads(status["settings_str"])["labels"]
    assert set(labels.values()) == {"New", "Working on it", "Qualified", "Follow-up", "Quote", "MOU", "Lost"}
    assert [g["title"] for g in leads["groups"]] == ["New leads", "Qualified", "Lost"]
    assert data["version"] == {"kind": "current", "value": "2026-10"}
    assert {"kind": "release_candidate", "value": "2027-01"} in data["versions"]
    cx = data["complexity"]
    assert cx["before"] - cx["after"] == cx["query"] > 0


def test_application_error_raises_in_gql(client: Any, emulator: MondayEmulator) -> None:
    leads = emulator.board_id("Leads")
    with pytest.raises(TransportQueryError) as caught:
        run(client, CREATE, board=leads, name="x", values=json.dumps({"status": {"label": "Nope"}}))
    assert caught.value.errors is not None
    assert caught.value.errors[0]["extensions"]["code"] == "ColumnValueException"
