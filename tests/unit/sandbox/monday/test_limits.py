"""Complexity estimate and budget, idempotency cache, cursors and ItemsQuery selection."""

from __future__ import annotations

import pytest
from graphql import parse

from crmsync.sandbox.faults import FaultSet
from crmsync.sandbox.monday import complexity, paging
from crmsync.sandbox.monday.errors import MondayError
from crmsync.sandbox.monday.idempotency import IdempotencyCache
from crmsync.sandbox.monday.operations import Operations
from crmsync.sandbox.monday.seeds import load
from crmsync.sandbox.monday.store import Store
from crmsync.sandbox.monday.webhooks import WebhookHub


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cost(query: str, **variables: object) -> int:
    return complexity.estimate(parse(query), None, variables)


def test_estimate_multiplies_lists_by_page_size() -> None:
    assert cost("{ me { id } }") == 2
    small = cost("{ boards(ids: [1]) { items_page(limit: 10) { items { id } } } }")
    large = cost("query ($l: Int!) { boards(ids: [1]) { items_page(limit: $l) { items { id } } } }", l=100)
    assert large > 9 * small
    assert cost("{ boards { id } }") == 1 + 25
    fragment = "query { boards(ids: 1) { ...B } } fragment B on Board { id name }"
    assert cost(fragment) == cost("{ boards(ids: 1) { id name } }") == 3


def test_estimate_charges_each_mutation() -> None:
    one = cost('mutation { a: create_item(board_id: 1, item_name: "x") { id } }')
    two = cost(
        'mutation { a: create_item(board_id: 1, item_name: "x") { id } b: delete_item(item_id: 1) { id } }'
    )
    assert one == complexity.MUTATION_COST + 2 and two == 2 * one


def test_budget_window_opens_with_the_first_call() -> None:
    clock = Clock()
    budget = complexity.ComplexityBudget(100, clock=clock)
    assert budget.charge("t", "all", 60) == complexity.Charge(100, 40, 60, 60)
    clock.now = 45
    with pytest.raises(complexity.BudgetExhausted) as caught:
        budget.charge("t", "all", 41)
    assert (caught.value.left, caught.value.retry_in) == (40, 15)
    assert budget.charge("other", "all", 41).after == 59  # per token
    assert budget.limit_for("read") == budget.limit_for("write") == 50
    clock.now = 60
    assert budget.peek("t", "all") == complexity.Charge(100, 100, 0, 0)
    assert budget.charge("t", "all", 41).before == 100


def test_call_limit() -> None:
    clock = Clock()
    limit = complexity.CallLimit(2, 60, clock=clock)
    assert [limit.hit(), limit.hit(), limit.hit()] == [None, None, 60]
    clock.now = 61
    assert limit.hit() is None
    assert complexity.CallLimit(None, 60).hit() is None


def test_idempotency_cache_states() -> None:
    clock = Clock()
    cache = IdempotencyCache(ttl=10, clock=clock)
    assert cache.begin("t", "k") is True
    assert cache.begin("t", "k") is False and cache.begin("u", "k") is True
    cache.finish("t", "k", 200, b"{}", {})
    cached = cache.begin("t", "k")
    assert not isinstance(cached, bool) and cached.body == b"{}"
    cache.abandon("u", "k")
    assert cache.begin("u", "k") is True
    cache.finish("u", "k", 500, b"", {})
    assert cache.begin("u", "k") is True  # errors are not kept
    clock.now = 10
    assert cache.begin("t", "k") is True  # expired
    assert cache.in_flight() == 2


def test_cursors_page_and_expire() -> None:
    clock = Clock()
    cursors = paging.CursorStore(ttl=100, clock=clock)
    page, cursor = cursors.first_page(list(range(7)), 3)
    assert page == [0, 1, 2] and cursor is not None
    page, cursor = cursors.next_page(cursor, 3)
    assert page == [3, 4, 5] and cursor is not None
    page, last = cursors.next_page(cursor, 3)
    assert page == [6] and last is None
    assert cursors.first_page([1, 2], 3) == ([1, 2], None)
    with pytest.raises(MondayError, match="invalid"):
        cursors.next_page("garbage", 3)
    clock.now = 100
    with pytest.raises(MondayError) as caught:
        cursors.next_page(cursor, 3)
    assert caught.value.code == "CursorExpiredError"
    with pytest.raises(MondayError):
        paging.check_limit(0)


@pytest.fixture
def leads() -> tuple[Operations, object]:
    store = Store()
    load(store, "demo")
    ops = Operations(store, WebhookHub(FaultSet(), signing_secret="s" * 32, short_lived_token="t"))
    return ops, next(b for b in store.boards.values() if b.name == "Leads")


def names(ops: Operations, board: object, query: dict[str, object]) -> list[str]:
    from crmsync.sandbox.monday.store import Board

    assert isinstance(board, Board)
    return [i.name for i in paging.select(board, ops.store.board_items(board.id), query, ops)]


def test_select_rules(leads: tuple[Operations, object]) -> None:
    ops, board = leads
    everyone = names(ops, board, {})
    assert everyone[:3] == ["Jane Cooper", "Wade Warren", "Esther Howard"]
    assert names(ops, board, {"rules": [{"column_id": "status", "compare_value": ["Lost"]}]}) == [
        "Brooklyn Simmons"
    ]
    assert names(ops, board, {"rules": [{"column_id": "person", "compare_value": ["person-58000002"]}]}) == [
        "Jane Cooper",
        "Cameron Williamson",
    ]
    either = {
        "operator": "or",
        "rules": [
            {"column_id": "name", "compare_value": ["Wade"], "operator": "starts_with"},
            {"column_id": "text", "compare_value": ["hoo"], "operator": "contains_text"},
        ],
    }
    assert names(ops, board, either) == ["Wade Warren", "Brooklyn Simmons"]
    between = {"rules": [{"column_id": "numbers", "compare_value": [5000, 13000], "operator": "between"}]}
    assert names(ops, board, between) == ["Jane Cooper", "Wade Warren"]
    nested = {
        "groups": [{"rules": [{"column_id": "phone", "compare_value": [], "operator": "is_not_empty"}]}]
    }
    assert names(ops, board, nested) == ["Wade Warren"]
    ordered = {"order_by": [{"column_id": "name", "direction": "desc"}]}
    assert names(ops, board, ordered)[0] == "Wade Warren"
    with pytest.raises(MondayError):
        names(ops, board, {"rules": [{"column_id": "nope", "compare_value": [1]}]})
    with pytest.raises(MondayError):
        names(
            ops,
            board,
            {"rules": [{"column_id": "text", "compare_value": [1], "operator": "within_the_next"}]},
        )
