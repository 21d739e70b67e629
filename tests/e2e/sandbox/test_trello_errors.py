"""Error fidelity of the Trello emulator: each error of the fact sheet's table, with its exact
status, body and content type; auth forms, parameter forms, aliases, ``/batch`` and fault kinds."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from crmsync.sandbox.runner import serve
from crmsync.sandbox.trello import TrelloEmulator

TEXT = "text/plain; charset=utf-8"
NOT_FOUND = "The requested resource was not found."


@pytest.fixture(scope="module")
def emulator() -> Iterator[TrelloEmulator]:
    emu = TrelloEmulator(token_limit=10_000, key_limit=10_000)
    with serve(emu):
        yield emu


@pytest.fixture
def api(emulator: TrelloEmulator) -> Iterator[httpx.Client]:
    emulator.seed("demo")
    auth = {"key": emulator.key, "token": emulator.token}
    with httpx.Client(base_url=emulator.base_url + "/1", params=auth) as client:
        yield client


def text_error(response: httpx.Response, status: int, body: str) -> None:
    assert (response.status_code, response.text) == (status, body)
    assert response.headers["content-type"] == TEXT


def first_card(emulator: TrelloEmulator) -> dict[str, object]:
    return emulator.cards(emulator.board_id("Delivery"))[0]


def test_400_invalid_id(api: httpx.Client) -> None:
    for path in ("/cards/nope", "/boards/123", "/lists/abcdefgh", "/labels/zz"):
        text_error(api.get(path), 400, "invalid id")


def test_404_unknown_object_and_unknown_route(api: httpx.Client) -> None:
    text_error(api.get("/cards/5f0c8e6b2a3d4e5f6a7b8c9d"), 404, NOT_FOUND)
    text_error(api.get("/boards/ABCDefgh"), 404, NOT_FOUND)  # a shortLink nobody has
    text_error(
        api.get("/cardz/5f0c8e6b2a3d4e5f6a7b8c9d"), 404, "Cannot GET /1/cardz/5f0c8e6b2a3d4e5f6a7b8c9d"
    )
    text_error(
        api.post("/cards/5f0c8e6b2a3d4e5f6a7b8c9d/nothing"),
        404,
        "Cannot POST /1/cards/5f0c8e6b2a3d4e5f6a7b8c9d/nothing",
    )


def test_400_invalid_value_for_parameters(api: httpx.Client, emulator: TrelloEmulator) -> None:
    text_error(api.post("/cards", params={"name": "x"}), 400, "invalid value for idList")
    text_error(
        api.post("/cards", params={"idList": "5f0c8e6b2a3d4e5f6a7b8c9d"}), 400, "invalid value for idList"
    )
    card = first_card(emulator)
    text_error(api.put(f"/cards/{card['id']}", json={"pos": "middle"}), 400, "invalid value for pos")
    text_error(api.put(f"/cards/{card['id']}", json={"due": "soon"}), 400, "invalid value for due")
    field = emulator.custom_field_id(emulator.board_id("Delivery"), "Amount")
    url = f"/cards/{card['id']}/customField/{field}/item"
    text_error(api.put(url, json={"value": {"text": "12"}}), 400, "invalid value for value")
    text_error(api.put(url, json={"value": {"number": "twelve"}}), 400, "invalid value for value")
    text_error(
        api.post("/webhooks", json={"callbackURL": "http://127.0.0.1:1/x", "idModel": "nope"}),
        400,
        "invalid value for idModel",
    )


def test_400_member_is_already_on_the_card(api: httpx.Client, emulator: TrelloEmulator) -> None:
    card = first_card(emulator)
    member = card["idMembers"][0]  # type: ignore[index]
    text_error(
        api.post(f"/cards/{card['id']}/idMembers", params={"value": member}),
        400,
        "member is already on the card",
    )


def test_401_auth_failures(emulator: TrelloEmulator, api: httpx.Client) -> None:
    base = emulator.base_url + "/1/members/me"
    text_error(httpx.get(base, params={"key": "0" * 32, "token": emulator.token}), 401, "invalid key")
    text_error(
        httpx.get(base, params={"key": emulator.key, "token": "ATTA" + "0" * 72}), 401, "invalid token"
    )
    text_error(httpx.get(base), 401, "invalid key")
    text_error(httpx.get(base, params={"key": emulator.key}), 401, "unauthorized permission requested")
    # a token whose member is not on the board
    outsider = emulator.add_member("carol", "Carol Outsider")
    token = emulator.add_token(outsider)
    board = emulator.board_id("Delivery")
    card = first_card(emulator)
    other = {"key": emulator.key, "token": token}
    text_error(
        httpx.get(f"{emulator.base_url}/1/boards/{board}", params=other),
        401,
        "unauthorized permission requested",
    )
    text_error(
        httpx.get(f"{emulator.base_url}/1/cards/{card['id']}", params=other),
        401,
        "unauthorized card permission requested",
    )
    emulator.revoke_token(token)
    text_error(httpx.get(f"{emulator.base_url}/1/members/me", params=other), 401, "invalid token")


def test_oauth_header_and_body_parameters(emulator: TrelloEmulator) -> None:
    header = f'OAuth oauth_consumer_key="{emulator.key}", oauth_token="{emulator.token}"'
    with httpx.Client(base_url=emulator.base_url + "/1", headers={"Authorization": header}) as api:
        emulator.seed("demo")
        backlog = emulator.list_id(emulator.board_id("Delivery"), "Backlog")
        by_json = api.post("/cards", json={"idList": backlog, "name": "json", "pos": "top"})
        by_form = api.post("/cards", data={"idList": backlog, "name": "form"})
        by_query = api.post("/cards", params={"idList": backlog, "name": "query"})
        assert [r.status_code for r in (by_json, by_form, by_query)] == [200, 200, 200]
        assert [r.json()["name"] for r in (by_json, by_form, by_query)] == ["json", "form", "query"]
        assert by_json.json()["pos"] < by_form.json()["pos"] < by_query.json()["pos"]
        assert by_json.headers["content-type"] == "application/json; charset=utf-8"


def test_ids_short_links_dates_and_singular_routes(api: httpx.Client, emulator: TrelloEmulator) -> None:
    card = first_card(emulator)
    by_id = api.get(f"/cards/{card['id']}").json()
    by_link = api.get(f"/card/{card['shortLink']}").json()
    assert by_id == by_link
    assert len(by_id["id"]) == 24 and int(by_id["id"], 16) >= 0
    assert by_id["dateLastActivity"].endswith("Z") and len(by_id["dateLastActivity"]) == 24
    board = api.get(f"/board/{emulator.board_id('Delivery')}", params={"fields": "name,shortLink"}).json()
    assert set(board) == {"id", "name", "shortLink"}
    assert api.get(f"/boards/{board['shortLink']}/cards/all").status_code == 200
    assert api.get(f"/cards/{card['id']}/name").json() == {"_value": card["name"]}


def test_custom_field_items_rules(api: httpx.Client, emulator: TrelloEmulator) -> None:
    board = emulator.board_id("Delivery")
    created = api.post("/cards", json={"idList": emulator.list_id(board, "Backlog"), "name": "cf"}).json()
    assert api.get(f"/cards/{created['id']}/customFieldItems").json() == []  # unset fields have no entry
    check = api.post(
        "/customFields", json={"idModel": board, "modelType": "board", "name": "Done?", "type": "checkbox"}
    ).json()
    url = f"/card/{created['id']}/customField/{check['id']}/item"
    text_error(api.put(url, json={"value": {"checkbox": "true"}}), 400, "invalid value for value")
    assert api.put(url, json={"value": {"checked": "true"}}).json()["value"] == {"checked": "true"}
    status = emulator.custom_field_id(board, "Update status")
    amount = emulator.custom_field_id(board, "Amount")
    options = api.get(f"/customFields/{status}/options").json()
    bulk = {
        "customFieldItems": [
            {"idCustomField": amount, "value": {"number": "42"}},
            {"idCustomField": status, "idValue": options[1]["id"]},
        ]
    }
    assert api.put(f"/cards/{created['id']}/customFields", json=bulk).status_code == 200
    items = {i["idCustomField"]: i for i in api.get(f"/cards/{created['id']}/customFieldItems").json()}
    assert items[amount]["value"] == {"number": "42"} and items[status]["idValue"] == options[1]["id"]
    assert api.put(url, json={"value": ""}).status_code == 200
    assert check["id"] not in {
        i["idCustomField"] for i in api.get(f"/cards/{created['id']}/customFieldItems").json()
    }
    actions = api.get(
        f"/boards/{board}/actions", params={"filter": "updateCustomFieldItem", "limit": 4}
    ).json()
    assert (
        actions[0]["data"]["old"] == {"value": {"checked": "true"}}
        and actions[0]["data"]["customFieldItem"]["value"] is None
    )
    assert actions[1]["data"]["old"] == {"idValue": None}


def test_actions_paging(api: httpx.Client, emulator: TrelloEmulator) -> None:
    board = emulator.board_id("Delivery")
    newest = api.get(f"/boards/{board}/actions", params={"limit": 5}).json()
    older = api.get(f"/boards/{board}/actions", params={"limit": 5, "before": newest[-1]["id"]}).json()
    assert not {a["id"] for a in newest} & {a["id"] for a in older}
    since = api.get(f"/boards/{board}/actions", params={"since": newest[2]["id"]}).json()
    assert [a["id"] for a in since] == [a["id"] for a in newest[:2]]
    text_error(api.get(f"/boards/{board}/actions", params={"limit": 1001}), 400, "invalid value for limit")


def test_batch(api: httpx.Client, emulator: TrelloEmulator) -> None:
    board = emulator.board_id("Delivery")
    card = first_card(emulator)
    nested = f"/boards/{board}/cards?fields=name%2CidList"
    urls = ",".join(
        [f"/boards/{board}", "/cards/nope", f"/cards/{card['id']}", nested.replace("%2C", "%252C")]
    )
    reply = api.get("/batch", params={"urls": urls})
    assert reply.status_code == 200
    body = reply.json()
    assert body[0]["200"]["id"] == board
    assert body[1] == {"message": "invalid id", "statusCode": 400}
    assert body[2]["200"]["id"] == card["id"]
    assert set(body[3]["200"][0]) == {"id", "name", "idList"}
    text_error(
        api.get("/batch", params={"urls": ",".join([f"/boards/{board}"] * 11)}), 400, "invalid value for urls"
    )
    text_error(api.post("/batch", params={"urls": f"/boards/{board}"}), 404, "Cannot POST /1/batch")


def test_fault_kinds(api: httpx.Client, emulator: TrelloEmulator) -> None:
    path = "/1/members/me"
    emulator.faults.add(path="^/1/members/me$", error="server_error", count=1)
    text_error(api.get("/members/me"), 500, "Internal Server Error")
    emulator.faults.add(path="^/1/members/me$", error="unavailable", count=1)
    text_error(api.get("/members/me"), 503, "Service Unavailable")
    emulator.faults.add(path="^/1/members/me$", error="invalid_token", count=1)
    text_error(api.get("/members/me"), 401, "invalid token")
    emulator.faults.add(path="^/1/members/me$", error="rate_limit", count=1)
    limited = api.get("/members/me")
    assert limited.status_code == 429
    assert limited.json() == {"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}
    emulator.faults.add(path="^/1/members/me$", status=404, count=1)
    text_error(api.get("/members/me"), 404, NOT_FOUND)
    assert api.get("/members/me").status_code == 200
    assert emulator.calls.count("GET", path) == 6
