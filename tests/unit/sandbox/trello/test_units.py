"""The Trello emulator's parts without a server: ids, positions, routing, limits, custom field values,
state persistence and the Python API's actions."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from crmsync.sandbox.trello import TrelloEmulator, sign
from crmsync.sandbox.trello.customfields import parse_item
from crmsync.sandbox.trello.http import Router, TrelloError
from crmsync.sandbox.trello.ids import id_time, is_short_link, iso, normalize_date, object_id, short_link
from crmsync.sandbox.trello.ratelimit import KEY_EXCEEDED, MEMBER_EXCEEDED, TOKEN_EXCEEDED, RateLimiter
from crmsync.sandbox.trello.store import POS_STEP, resolve_pos


def test_object_ids_carry_their_creation_time() -> None:
    ident = object_id(at=1_600_000_000)
    assert len(ident) == 24 and ident == ident.lower() and ident.startswith(f"{1_600_000_000:08x}")
    assert id_time(ident) == datetime.fromtimestamp(1_600_000_000, tz=UTC)
    assert object_id() != object_id()
    assert abs(id_time(object_id()).timestamp() - time.time()) < 5
    assert is_short_link(short_link()) and len(short_link()) == 8


def test_dates_are_iso_with_milliseconds() -> None:
    assert iso(datetime(2020, 11, 27, 19, 29, 8, 72_500, tzinfo=UTC)) == "2020-11-27T19:29:08.072Z"
    assert normalize_date("2026-03-01T10:00:00+02:00") == "2026-03-01T08:00:00.000Z"
    assert normalize_date("2026-03-01") == "2026-03-01T00:00:00.000Z"
    with pytest.raises(ValueError):
        normalize_date("tomorrow")


def test_positions() -> None:
    siblings = [{"pos": 100.0}, {"pos": 300.0}]
    assert resolve_pos("top", siblings) == 50.0
    assert resolve_pos("bottom", siblings) == 300.0 + POS_STEP
    assert resolve_pos(None, []) == POS_STEP
    assert resolve_pos("12.5", siblings) == 12.5
    for bad in ("middle", -1):
        with pytest.raises(TrelloError) as raised:
            resolve_pos(bad, siblings)
        assert (raised.value.status, raised.value.body) == (400, "invalid value for pos")


def test_router_folds_singular_names_and_prefers_earlier_routes() -> None:
    router = Router()
    router.add("GET", "/cards/{card}/actions", lambda call: "actions")
    router.add("GET", "/cards/{card}/{field}", lambda call: "field")
    found = router.match("GET", "/card/abc/actions/")
    assert found is not None and found[1] == {"card": "abc"} and found[0].handler(None) == "actions"  # type: ignore[arg-type]
    found = router.match("GET", "/cards/abc/name")
    assert found is not None and found[1] == {"card": "abc", "field": "name"}
    assert router.match("POST", "/cards/abc/name") is None


def test_token_key_and_member_windows() -> None:
    limiter = RateLimiter(token_limit=2, key_limit=3, window_seconds=10, member_limit=1)
    assert limiter.check("k", "a", "/1/cards/x", now=0).refusal is None
    assert limiter.check("k", "a", "/1/cards/x", now=1).refusal is None
    refused = limiter.check("k", "a", "/1/cards/x", now=2)
    assert refused.refusal == TOKEN_EXCEEDED and refused.headers["x-rate-limit-api-token-remaining"] == "0"
    assert limiter.check("k", "b", "/1/members/me", now=3).refusal is None
    assert limiter.check("k", "c", "/1/cards/x", now=3).refusal == KEY_EXCEEDED
    assert limiter.check("k", "a", "/1/cards/x", now=10.5).refusal is None  # a new window
    assert limiter.check("k", "b", "/1/members/me", now=11).refusal == MEMBER_EXCEEDED


def test_lockout_after_more_than_200_refusals() -> None:
    limiter = RateLimiter(token_limit=1, lockout_after=200)
    assert limiter.check("k", "a", "/1/x", now=0).refusal is None
    for n in range(201):
        assert limiter.check("k", "a", "/1/x", now=n / 1000).refusal == TOKEN_EXCEEDED
    assert limiter.check("k", "fresh", "/1/x", now=1).refusal == KEY_EXCEEDED
    assert limiter.check("k", "fresh", "/1/x", now=11).refusal is None


FIELDS = {
    "text": {"id": "t", "type": "text"},
    "number": {"id": "n", "type": "number"},
    "date": {"id": "d", "type": "date"},
    "checkbox": {"id": "c", "type": "checkbox"},
    "list": {"id": "l", "type": "list", "options": [{"id": "o1"}]},
}


@pytest.mark.parametrize(
    ("field", "payload", "expected"),
    [
        ("text", {"value": {"text": "hi"}}, ("value", {"text": "hi"})),
        ("number", {"value": {"number": "42"}}, ("value", {"number": "42"})),
        ("number", {"value": {"number": 4.5}}, ("value", {"number": "4.5"})),
        (
            "date",
            {"value": {"date": "2018-03-13T16:00:00Z"}},
            ("value", {"date": "2018-03-13T16:00:00.000Z"}),
        ),
        ("checkbox", {"value": {"checked": "true"}}, ("value", {"checked": "true"})),
        ("checkbox", {"value": {"checked": False}}, ("value", {"checked": "false"})),
        ("list", {"idValue": "o1"}, ("idValue", "o1")),
        ("text", {"value": ""}, ("value", None)),
        ("list", {"idValue": ""}, ("idValue", None)),
    ],
)
def test_custom_field_values(field: str, payload: dict[str, object], expected: tuple[str, object]) -> None:
    assert parse_item(FIELDS[field], payload) == expected


@pytest.mark.parametrize(
    ("field", "payload", "message"),
    [
        ("checkbox", {"value": {"checkbox": "true"}}, "invalid value for value"),
        ("text", {"value": {"number": "1"}}, "invalid value for value"),
        ("number", {"value": {"number": "x"}}, "invalid value for value"),
        ("date", {"value": {"date": "never"}}, "invalid value for value"),
        ("list", {"idValue": "nope"}, "invalid value for idValue"),
        ("list", {"value": {"text": "OK"}}, "invalid value for value"),
        ("text", {"idValue": "o1"}, "invalid value for value"),
    ],
)
def test_custom_field_value_refused(field: str, payload: dict[str, object], message: str) -> None:
    with pytest.raises(TrelloError) as raised:
        parse_item(FIELDS[field], payload)
    assert (raised.value.status, raised.value.body) == (400, message)


def test_signature_is_base64_hmac_sha1_of_body_and_url() -> None:
    # computed independently: printf 'bodyhttp://x/y' | openssl dgst -sha1 -hmac secret -binary | base64
    assert sign("secret", b"body", "http://x/y") == "KI2ER9Ril3PdS0ZdZYz45egbMnE="


def test_python_api_state_round_trip_and_seeds() -> None:
    emu = TrelloEmulator()
    emu.seed("demo")
    board = emu.board_id("Delivery")
    assert len(emu.cards(board)) == 4
    names = [f["name"] for f in emu.dump_state()["custom_fields"].values()]
    assert names == [
        "Salesforce Task Id",
        "Salesforce Opportunity Id",
        "Stage",
        "Amount",
        "Close date",
        "Update status",
        "Account",
    ]
    card = emu.create_card(emu.list_id(board, "Backlog"), "Python API", by="bob")
    emu.set_custom_field(card["id"], "Amount", 99)
    emu.set_custom_field(card["id"], "Update status", "Overdue")
    assert emu.actions(board, limit=3)[0]["type"] == "updateCustomFieldItem"
    assert emu.actions(board, filter="createCard")[0]["memberCreator"]["username"] == "bob"
    data = emu.dump_state()
    other = TrelloEmulator()
    other.restore_state(data)
    assert other.cards(board) == emu.cards(board)
    assert other.summary()["cards"] == 5
    emu.seed("empty")
    assert emu.summary()["boards"] == 0 and emu.summary()["members"] == 1
    with pytest.raises(KeyError):
        emu.board_id("Delivery")
    assert set(emu.credentials()) == {"TRELLO_API_URL", "TRELLO_KEY", "TRELLO_TOKEN", "TRELLO_SECRET"}
    emu.close()
    other.close()
