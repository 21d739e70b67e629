"""Error fidelity of the Monday.com emulator: exact status and body for every error it can give."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crmsync.sandbox.faults import FaultRule
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve

DOCS = "https://developer.monday.com/api-reference/docs/change-column-values"
LABEL_MISSING = (
    "invalid value - label does not exist in column. Please check our API documentation for the correct "
    f"data structure for this column. {DOCS}"
)
BAD_VALUE = (
    "invalid value, please check our API documentation for the correct data structure for this column. "
    + DOCS
)
ACCOUNT = 31415926


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def served(clock: FakeClock) -> Iterator[tuple[MondayEmulator, str]]:
    em = MondayEmulator(clock=clock, max_items_per_board=10)
    with serve(em) as server:
        yield em, server.url + "/v2"


@pytest.fixture
def em(served: tuple[MondayEmulator, str]) -> MondayEmulator:
    served[0].seed("demo")
    return served[0]


@pytest.fixture
def api(served: tuple[MondayEmulator, str]) -> Iterator[Any]:
    emulator, url = served
    with httpx.Client() as http:

        def post(
            query: str,
            variables: Any = None,
            *,
            headers: dict[str, str] | None = None,
            raw: bytes | None = None,
        ) -> httpx.Response:
            sent = {"Authorization": emulator.token, "API-Version": "2026-10", **(headers or {})}
            if raw is not None:
                return http.post(url, content=raw, headers={**sent, "Content-Type": "application/json"})
            body: dict[str, Any] = {"query": query}
            if variables is not None:
                body["variables"] = variables
            return http.post(url, json=body, headers=sent)

        yield post


def body_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON body with ``extensions.request_id`` checked and removed (it differs per call)."""
    body: dict[str, Any] = response.json()
    extensions = body.get("extensions")
    if extensions is not None:
        assert len(extensions.pop("request_id")) == 36
        if not extensions:
            del body["extensions"]
    return body


def app_error(
    code: str, message: str, path: str | None, line: int, column: int, **extensions: Any
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "locations": [{"line": line, "column": column}]}
    if path is not None:
        error["path"] = [path]
    error["extensions"] = {"code": code, **extensions}
    return error


# -- transport -----------------------------------------------------------------------------------
@pytest.mark.parametrize("auth", [None, "wrong-token", "Bearer wrong-token"])
def test_missing_or_wrong_token_is_401(api: Any, em: MondayEmulator, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {"Authorization": ""}
    response = api("{ me { id } }", headers=headers)
    assert response.status_code == 401
    assert body_of(response) == {
        "errors": [{"message": "Unauthorized", "extensions": {"code": "UNAUTHORIZED", "status_code": 401}}]
    }


def test_bearer_and_bare_tokens_both_work(api: Any, em: MondayEmulator) -> None:
    for auth in (em.token, f"Bearer {em.token}", em.app_token):
        response = api("{ me { id } }", headers={"Authorization": auth})
        assert response.status_code == 200
        assert body_of(response) == {"data": {"me": {"id": "58000001"}}, "account_id": ACCOUNT}


def test_malformed_api_version(api: Any, em: MondayEmulator) -> None:
    response = api("{ me { id } }", headers={"API-Version": "2026-02"})
    assert response.status_code == 200
    body = body_of(response)
    error = body["errors"][0]
    assert error["message"].startswith("The API version '2026-02' is invalid.")
    assert error["extensions"] == {
        "code": "InvalidVersionException",
        "status_code": 400,
        "error_data": {"version": "2026-02"},
    }
    assert body["account_id"] == ACCOUNT and "data" not in body


def test_no_version_header_gets_current_and_old_ones_answer_deprecated(api: Any, em: MondayEmulator) -> None:
    assert api("{ version { kind value } }", headers={"API-Version": ""}).json()["data"]["version"] == {
        "kind": "current",
        "value": "2026-10",
    }
    old = api("{ version { kind value } }", headers={"API-Version": "2024-10"}).json()
    assert old["data"]["version"] == {"kind": "deprecated", "value": "2024-10"}


def test_body_that_is_not_json_is_400(api: Any, em: MondayEmulator) -> None:
    response = api("", raw=b"{not json")
    assert response.status_code == 400
    assert body_of(response) == {
        "errors": [
            {
                "message": "Invalid JSON in request body",
                "extensions": {"code": "JsonParseException", "status_code": 400},
            }
        ],
        "account_id": ACCOUNT,
    }


def test_string_variables_are_refused_since_2025_04(api: Any, em: MondayEmulator) -> None:
    query = "query ($ids: [ID!]) { items(ids: $ids) { id } }"
    response = api(query, json.dumps({"ids": [1]}))
    assert response.status_code == 400
    assert body_of(response) == {
        "errors": [
            {
                "message": "Bad request: variables must be a JSON object, not a JSON string",
                "extensions": {"code": "BAD_REQUEST", "status_code": 400},
            }
        ],
        "account_id": ACCOUNT,
    }
    older = api(query, json.dumps({"ids": [1]}), headers={"API-Version": "2025-01"})
    assert older.status_code == 200 and older.json()["data"] == {"items": []}


def test_parse_error(api: Any, em: MondayEmulator) -> None:
    response = api("{ boards { id ) }")
    assert response.status_code == 200
    assert body_of(response) == {
        "errors": [
            {
                "message": 'Parse error on ")" (RPAREN) at [1, 15]',
                "locations": [{"line": 1, "column": 15}],
                "extensions": {"code": "PARSE_ERROR"},
            }
        ],
        "account_id": ACCOUNT,
    }


def test_unknown_field(api: Any, em: MondayEmulator) -> None:
    response = api("{ boards { id colour } }")
    assert response.status_code == 200
    assert body_of(response) == {
        "errors": [
            {
                "message": "Field 'colour' doesn't exist on type 'Board'",
                "locations": [{"line": 1, "column": 15}],
                "extensions": {"code": "undefinedField", "typeName": "Board", "fieldName": "colour"},
            }
        ],
        "account_id": ACCOUNT,
    }


# -- application errors (HTTP 200) --------------------------------------------------------------------
CREATE = 'mutation ($v: JSON) { create_item(board_id: BOARD, item_name: "x", column_values: $v) { id } }'


def create(api: Any, em: MondayEmulator, values: dict[str, Any], board: str = "Leads") -> httpx.Response:
    return api(CREATE.replace("BOARD", em.board_id(board)), {"v": json.dumps(values)})


def test_unknown_status_label(api: Any, em: MondayEmulator) -> None:
    response = create(api, em, {"status": {"label": "Won big"}})
    assert response.status_code == 200
    assert body_of(response) == {
        "data": {"create_item": None},
        "errors": [
            app_error(
                "ColumnValueException",
                LABEL_MISSING,
                "create_item",
                1,
                23,
                status_code=200,
                error_data={"column_value": '{"label": "Won big"}', "column_type": "color"},
            )
        ],
        "account_id": ACCOUNT,
    }
    assert len(em.items(em.board_id("Leads"))) == 5


def test_create_labels_if_missing_adds_the_label(api: Any, em: MondayEmulator) -> None:
    leads = em.board_id("Leads")
    query = (
        f'mutation {{ create_item(board_id: {leads}, item_name: "x", create_labels_if_missing: true, '
        'column_values: "{\\"status\\": {\\"label\\": \\"Won big\\"}}") { id } }'
    )
    item_id = api(query).json()["data"]["create_item"]["id"]
    assert em.item(item_id)["columns"]["status"] == "Won big"
    assert create(api, em, {"status": "Won big"}).json()["data"]["create_item"] is not None


@pytest.mark.parametrize(
    ("board", "values", "column_type", "label"),
    [
        ("Leads", {"numbers": "twelve"}, "numeric", False),
        ("Leads", {"date4": {"date": "2026-13-40"}}, "date", False),
        ("Leads", {"email": {"email": "not-an-address"}}, "email", False),
        ("Leads", {"phone": {"phone": "call me"}}, "phone", False),
        ("Leads", {"person": {"personsAndTeams": [{"id": 1, "kind": "person"}]}}, "multiple-person", False),
        ("Leads", {"status": {"index": 19}}, "color", True),
        ("Leads", {"text": {"not": "text"}}, "text", False),
        ("Deals", {"dropdown": {"labels": ["Hardware"]}}, "dropdown", True),
        ("Deals", {"checkbox": {"checked": "maybe"}}, "boolean", False),
        ("Deals", {"board_relation_mkr1": {"item_ids": [42]}}, "board-relation", False),
        (
            "Deals",
            {"board_relation_mkr1": {"linkedPulseIds": [{"linkedPulseId": 1}]}},
            "board-relation",
            False,
        ),
    ],
)
def test_column_value_exception_per_type(
    api: Any, em: MondayEmulator, board: str, values: dict[str, Any], column_type: str, label: bool
) -> None:
    response = create(api, em, values, board)
    assert response.status_code == 200
    error = body_of(response)["errors"][0]
    assert error == app_error(
        "ColumnValueException",
        LABEL_MISSING if label else BAD_VALUE,
        "create_item",
        1,
        23,
        status_code=200,
        error_data={"column_value": json.dumps(next(iter(values.values()))), "column_type": column_type},
    )


def test_unknown_board_column_item_and_group(api: Any, em: MondayEmulator) -> None:
    leads = em.board_id("Leads")
    item = em.items(leads)[0]["id"]
    query = f"""mutation {{
  a: create_item(board_id: 999, item_name: "x") {{ id }}
  b: change_column_value(board_id: {leads}, item_id: {item}, column_id: "nope", value: "\\"x\\"") {{ id }}
  c: archive_item(item_id: 12345) {{ id }}
  d: create_item(board_id: {leads}, item_name: "x", group_id: "nope") {{ id }}
  e: change_simple_column_value(board_id: {leads}, item_id: {item}, column_id: "text", value: "ok") {{ id }}
}}"""
    response = api(query)
    assert response.status_code == 200
    body = body_of(response)
    assert body["data"] == {"a": None, "b": None, "c": None, "d": None, "e": {"id": item}}
    assert body["errors"] == [
        app_error(
            "InvalidBoardIdException",
            "Board not found",
            "a",
            2,
            3,
            status_code=200,
            error_data={"board_id": 999},
        ),
        app_error(
            "InvalidColumnIdException",
            "This column ID doesn't exist for the board",
            "b",
            3,
            3,
            status_code=200,
            error_data={"column_id": "nope", "board_id": int(leads)},
        ),
        app_error(
            "ResourceNotFoundException",
            "Item with id 12345 not found",
            "c",
            4,
            3,
            status_code=404,
            error_data={"item_id": 12345},
        ),
        app_error(
            "InvalidGroupIdException",
            "Group not found",
            "d",
            5,
            3,
            status_code=200,
            error_data={"group_id": "nope", "board_id": int(leads)},
        ),
    ]


@pytest.mark.parametrize("name", ["", "x" * 256])
def test_item_name_length(api: Any, em: MondayEmulator, name: str) -> None:
    leads = em.board_id("Leads")
    response = api(
        f"mutation ($n: String!) {{ create_item(board_id: {leads}, item_name: $n) {{ id }} }}", {"n": name}
    )
    assert body_of(response)["errors"] == [
        app_error(
            "ItemNameTooLongException",
            "Item name must be between 1 and 255 characters long",
            "create_item",
            1,
            26,
            status_code=200,
            error_data={"item_name_length": len(name)},
        )
    ]


def test_items_limit_per_board(api: Any, em: MondayEmulator) -> None:
    leads = em.board_id("Leads")
    query = f'mutation {{ create_item(board_id: {leads}, item_name: "x") {{ id }} }}'
    for _ in range(5):  # five seeded items + five = the limit of ten configured for this emulator
        assert api(query).json()["data"]["create_item"] is not None
    assert body_of(api(query))["errors"] == [
        app_error(
            "ItemsLimitationException",
            "The board has reached its limit of 10 items",
            "create_item",
            1,
            12,
            status_code=200,
            error_data={"board_id": int(leads), "limit": 10},
        )
    ]


def test_page_limit_and_ids_caps(api: Any, em: MondayEmulator) -> None:
    leads = em.board_id("Leads")
    body = body_of(api(f"{{ boards(ids: {leads}) {{ items_page(limit: 501) {{ cursor }} }} }}"))
    assert body["data"] == {"boards": [None]}
    assert body["errors"][0]["extensions"] == {
        "code": "InvalidArgumentException",
        "status_code": 200,
        "error_data": {"argument": "limit", "value": 501},
    }
    assert body["errors"][0]["message"] == "limit must be between 1 and 500"
    body = body_of(api("query ($ids: [ID!]) { items(ids: $ids) { id } }", {"ids": list(range(1, 102))}))
    assert body["errors"][0]["message"] == "ids can hold at most 100 item ids"
    assert body["errors"][0]["extensions"]["code"] == "InvalidArgumentException"


def test_cursor_expires_after_an_hour(api: Any, em: MondayEmulator, clock: FakeClock) -> None:
    leads = em.board_id("Leads")
    cursor = api(f"{{ boards(ids: {leads}) {{ items_page(limit: 2) {{ cursor }} }} }}").json()["data"][
        "boards"
    ][0]["items_page"]["cursor"]
    nxt = "query ($c: String!) { next_items_page(cursor: $c, limit: 2) { cursor items { id } } }"
    assert len(api(nxt, {"c": cursor}).json()["data"]["next_items_page"]["items"]) == 2
    clock.now += 3600
    body = body_of(api(nxt, {"c": cursor}))
    assert body["data"] is None
    assert body["errors"] == [
        app_error(
            "CursorExpiredError",
            "The cursor provided has expired. Cursors are valid for 60 minutes: start over with items_page.",
            "next_items_page",
            1,
            23,
            status_code=200,
            error_data={"cursor": cursor},
        )
    ]


def test_single_query_complexity_cap(api: Any, em: MondayEmulator) -> None:
    query = "{ boards(limit: 1000) { items_page(limit: 500) { items { column_values { text } } } } }"
    body = body_of(api(query))
    cost = body["errors"][0]["extensions"]["complexity"]
    assert cost > 5_000_000
    assert body == {
        "errors": [
            {
                "message": f"Query has complexity of {cost}, which exceeds max complexity of 5000000",
                "extensions": {"code": "maxComplexityExceeded", "complexity": cost, "maxComplexity": 5000000},
            }
        ],
        "account_id": ACCOUNT,
    }


def test_webhook_url_refused(api: Any, em: MondayEmulator) -> None:
    leads = em.board_id("Leads")
    query = "mutation ($u: String!) { create_webhook(board_id: BOARD, url: $u, event: create_item) { id } }"
    query = query.replace("BOARD", leads)
    body = body_of(api(query, {"u": "https://x.example/" + "a" * 250}))
    assert body["errors"][0]["extensions"]["code"] == "InvalidArgumentException"
    unknown_event = api(
        f'mutation {{ create_webhook(board_id: {leads}, url: "http://x", '
        "event: move_item_to_group) { id } }"
    )
    assert unknown_event.status_code == 200 and unknown_event.json()["errors"][0]["extensions"]["code"] == (
        "GRAPHQL_VALIDATION_FAILED"
    )


# -- fault rules --------------------------------------------------------------------------------------
FAULTS = [
    (
        "server_error",
        500,
        "Internal Server Error",
        {"code": "INTERNAL_SERVER_ERROR", "status_code": 500},
        None,
    ),
    ("unavailable", 503, "Service Unavailable", {"code": "SERVICE_UNAVAILABLE", "status_code": 503}, "30"),
    ("bad_gateway", 502, "Bad Gateway", {"code": "BAD_GATEWAY", "status_code": 502}, None),
    ("gateway_timeout", 504, "Gateway Timeout", {"code": "GATEWAY_TIMEOUT", "status_code": 504}, None),
    ("rate_limit", 429, "Rate Limit Exceeded", {"code": "RATE_LIMIT_EXCEEDED", "retry_in_seconds": 60}, "60"),
    (
        "complexity",
        429,
        "Complexity budget exhausted",
        {"code": "COMPLEXITY_BUDGET_EXHAUSTED", "retry_in_seconds": 60},
        "60",
    ),
    (
        "concurrency",
        429,
        "Max concurrency exceeded",
        {"code": "maxConcurrencyExceeded", "retry_in_seconds": 10},
        "10",
    ),
    (
        "daily_limit",
        429,
        "Daily limit exceeded",
        {"code": "DAILY_LIMIT_EXCEEDED", "retry_in_seconds": 3600},
        "3600",
    ),
    (
        "ip_rate_limit",
        429,
        "IP rate limit exceeded",
        {"code": "IP_RATE_LIMIT_EXCEEDED", "retry_in_seconds": 10},
        "10",
    ),
    (
        "locked",
        423,
        "Resource is currently locked, please try again later",
        {"code": "RESOURCE_LOCKED", "status_code": 423},
        "5",
    ),
    ("temporarily_blocked", 200, "API temporarily blocked", {"code": "API_TEMPORARILY_BLOCKED"}, "30"),
    ("invalid_token", 401, "Unauthorized", {"code": "UNAUTHORIZED", "status_code": 401}, None),
]


@pytest.mark.parametrize(("kind", "status", "message", "extensions", "retry_after"), FAULTS)
def test_fault_kinds(
    api: Any,
    em: MondayEmulator,
    kind: str,
    status: int,
    message: str,
    extensions: dict[str, Any],
    retry_after: str | None,
) -> None:
    em.faults.add(FaultRule(path="^/v2$", error=kind, count=1))
    response = api("{ me { id } }")
    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_after
    expected: dict[str, Any] = {"errors": [{"message": message, "extensions": extensions}]}
    if kind != "invalid_token":
        expected["account_id"] = ACCOUNT
    assert body_of(response) == expected
    assert api("{ me { id } }").status_code == 200  # the rule was spent


def test_fault_status_gives_monday_shaped_body(api: Any, em: MondayEmulator) -> None:
    em.faults.add(FaultRule(error=None, status=418, count=1))
    response = api("{ me { id } }")
    assert response.status_code == 418
    assert body_of(response) == {
        "errors": [{"message": "I'm a Teapot", "extensions": {"code": "IM_A_TEAPOT", "status_code": 418}}],
        "account_id": ACCOUNT,
    }
