"""The monday connector against the monday emulator: batched writes, replays, pacing, reads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crmsync.connectors.base import Write
from crmsync.connectors.monday import MondayClient, MondayConnector, MondaySettings
from crmsync.connectors.monday.budget import ComplexityPacer, StoreBook
from crmsync.errors import BudgetExhausted, Fatal, FixTheData, RetryLater
from crmsync.sandbox.faults import FaultRule
from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve
from crmsync.store.db import Store


class FakeClock:
    """Time that moves only when someone sleeps: shared by the emulator and the pacer."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def mutation_calls(emu: MondayEmulator, expected: int | None = None) -> int:
    """Requests served so far (the emulator notes a call just before its reply leaves)."""
    if expected is not None:
        deadline = time.monotonic() + 5
        while emu.calls.count("POST", "/v2") < expected and time.monotonic() < deadline:
            time.sleep(0.01)
    return emu.calls.count("POST", "/v2")


def connector_for(
    emu: MondayEmulator,
    *,
    clock: FakeClock | None = None,
    per_minute: int = 10_000_000,
    transport: httpx.BaseTransport | None = None,
    book: StoreBook | None = None,
    name: str = "monday",
) -> MondayConnector:
    env = emu.credentials()
    settings = MondaySettings(
        token=env["MONDAY_TOKEN"], api_url=env["MONDAY_API_URL"], complexity_per_minute=per_minute
    )
    clock = clock or FakeClock()
    pacer = ComplexityPacer(per_minute, book, clock=clock, sleep=clock.sleep)
    client = MondayClient(settings, pacer=pacer, transport=transport, sleep=clock.sleep)
    return MondayConnector(name, settings=settings, client=client)


@pytest.fixture
def emu() -> Iterator[MondayEmulator]:
    emulator = MondayEmulator(retry_delays=(0.05,))
    emulator.seed("demo")
    with serve(emulator):
        yield emulator


@pytest.fixture
def monday(emu: MondayEmulator) -> Iterator[MondayConnector]:
    connector = connector_for(emu)
    yield connector
    connector.close()


def test_check_and_a_refused_token(emu: MondayEmulator, monday: MondayConnector) -> None:
    monday.check()
    env = emu.credentials()
    bad = MondayConnector("bad", settings=MondaySettings(token="wrong", api_url=env["MONDAY_API_URL"]))
    with pytest.raises(Fatal) as refused:
        bad.check()
    assert refused.value.status == 401
    bad.close()


def test_creates_updates_and_deletes_go_in_aliased_batches(
    emu: MondayEmulator, monday: MondayConnector
) -> None:
    board = emu.board_id("Leads")
    monday.columns(board)  # the column types, read once
    before = mutation_calls(emu)
    creates = [
        Write(
            f"lead-{n}",
            "create",
            {"name": f"Lead {n}", "status": "New", "numbers": n, "email": f"l{n}@x.example"},
        )
        for n in range(45)
    ]
    results = monday.write_batch(board, creates)
    assert mutation_calls(emu, before + 1) == before + 1  # 45 creates, one request
    assert all(r.ok and r.created for r in results)
    assert [r.key for r in results] == [w.key for w in creates]
    ids = [str(r.target_id) for r in results]
    items = {i["id"]: i for i in emu.items(board)}
    assert items[ids[7]]["name"] == "Lead 7" and items[ids[7]]["columns"]["status"] == "New"
    assert items[ids[7]]["columns"]["numbers"] == "7"

    updates = [
        Write(
            f"lead-{n}", "update", {"status": "Qualified", "name": f"Lead {n} (qualified)"}, target_id=ids[n]
        )
        for n in range(30)
    ]
    deletes = [Write(f"lead-{n}", "delete", target_id=ids[n]) for n in range(30, 45)]
    results = monday.write_batch(board, [*updates, *deletes])
    assert mutation_calls(emu, before + 2) == before + 2  # 30 updates and 15 deletes, one request
    assert all(r.ok and r.created is False for r in results)
    item = emu.item(ids[3])
    assert item["name"] == "Lead 3 (qualified)" and item["columns"]["status"] == "Qualified"
    assert emu.item(ids[40])["state"] == "deleted"

    again = monday.write_batch(board, deletes[:2])  # deleting what is gone succeeds
    assert all(r.ok for r in again)


def test_group_moves_and_archives(emu: MondayEmulator, monday: MondayConnector) -> None:
    board = emu.board_id("Leads")
    lost = emu.group_id(board, "Lost")
    [made] = monday.write_batch(board, [Write("k", "create", {"name": "Mover", "__group__": lost})])
    assert emu.item(str(made.target_id))["group_id"] == lost
    top = emu.items(board)[0]["group_id"]
    [moved] = monday.write_batch(
        board, [Write("k", "update", {"__group__": top, "__archive__": True}, target_id=made.target_id)]
    )
    assert moved.ok
    item = emu.item(str(made.target_id))
    assert item["group_id"] == top and item["state"] == "archived"


def test_a_refused_write_fails_alone(emu: MondayEmulator, monday: MondayConnector) -> None:
    board = emu.board_id("Leads")
    results = monday.write_batch(
        board,
        [
            Write("good", "create", {"name": "Good", "status": "New"}),
            Write("bad-label", "create", {"name": "Bad", "status": "No such label"}),
            Write("no-name", "create", {"status": "New"}),
            Write("missing", "update", {"status": "New"}, target_id="1999999999"),
        ],
    )
    assert [r.ok for r in results] == [True, False, False, False]
    assert isinstance(results[1].error, FixTheData) and results[1].error.vendor_code == "ColumnValueException"
    assert isinstance(results[2].error, FixTheData)
    assert (
        isinstance(results[3].error, FixTheData)
        and results[3].error.vendor_code == "ResourceNotFoundException"
    )


def test_upserts_find_the_item_by_its_external_id_column(
    emu: MondayEmulator, monday: MondayConnector
) -> None:
    board = emu.board_id("Leads")
    lead_col = "text_mkr1lead"
    [first] = monday.write_batch(
        board,
        [
            Write(
                "a",
                "upsert",
                {"name": "Upserted", lead_col: "00Q000000000001"},
                None,
                lead_col,
                "00Q000000000001",
            )
        ],
    )
    assert first.ok and first.created
    [second] = monday.write_batch(
        board, [Write("a", "upsert", {"name": "Upserted again"}, None, lead_col, "00Q000000000001")]
    )
    assert second.ok and second.created is False and second.target_id == first.target_id
    assert emu.item(str(first.target_id))["name"] == "Upserted again"


class LoseFirstMutationReply(httpx.BaseTransport):
    """Sends every request, but loses the reply of the first mutation: a crash after sending."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if b"mutation" in request.content and not self.lost:
            response.read()
            response.close()
            self.lost += 1
            raise httpx.ReadTimeout("the reply was lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_create_resent_after_a_lost_reply_is_replayed_not_duplicated(emu: MondayEmulator) -> None:
    board = emu.board_id("Leads")
    count = len(emu.items(board))
    writes = [Write(f"replay-{n}", "create", {"name": f"Replay {n}", "status": "New"}) for n in range(25)]
    crashing = connector_for(emu, transport=LoseFirstMutationReply())
    with pytest.raises(RetryLater):
        crashing.write_batch(board, writes)
    crashing.close()
    assert len(emu.items(board)) == count + 25  # it did go through

    restarted = connector_for(emu)  # a new process sends the same writes again
    results = restarted.write_batch(board, writes)
    assert all(r.ok and r.created for r in results)
    assert restarted.client.replays == 1
    assert len(emu.items(board)) == count + 25  # nothing created twice
    names = {i["id"]: i["name"] for i in emu.items(board)}
    assert [names[str(r.target_id)] for r in results] == [f"Replay {n}" for n in range(25)]
    restarted.close()


def test_an_identical_later_update_is_applied_not_replayed(
    emu: MondayEmulator, monday: MondayConnector
) -> None:
    board = emu.board_id("Leads")
    [made] = monday.write_batch(board, [Write("x", "create", {"name": "Flip", "status": "New"})])
    set_qualified = Write("x", "update", {"status": "Qualified"}, target_id=made.target_id)
    monday.write_batch(board, [set_qualified])
    emu.ui_change_column(str(made.target_id), "status", {"label": "Lost"})  # someone changes it back
    monday.write_batch(board, [set_qualified])
    assert emu.item(str(made.target_id))["columns"]["status"] == "Qualified"


def test_500_creates_are_paced_to_a_small_budget_without_a_complexity_error() -> None:
    clock = FakeClock()
    emulator = MondayEmulator(complexity_per_minute=1_000_000, clock=clock, retry_delays=(0.05,))
    emulator.seed("demo")
    with serve(emulator):
        board = emulator.board_id("Leads")
        monday = connector_for(emulator, clock=clock, per_minute=emulator.budget.per_minute)
        writes = [Write(f"bulk-{n}", "create", {"name": f"Bulk {n}", "numbers": n}) for n in range(500)]
        results = monday.write_batch(board, writes)
        assert all(r.ok for r in results)
        assert len({r.target_id for r in results}) == 500
        assert monday.writes_per_request() >= 20
        requests = mutation_calls(emulator, 7)
        assert requests <= 1 + -(-500 // monday.writes_per_request())  # the column query, then full batches
        assert [c for c in emulator.calls.calls() if c.status == 429] == []
        assert monday.client.pacer.waited >= 60  # it waited for the window instead of exceeding it
        monday.close()


def test_two_processes_share_one_budget_through_the_store(tmp_path: Path) -> None:
    clock = FakeClock()
    emulator = MondayEmulator(complexity_per_minute=500_000, clock=clock, retry_delays=(0.05,))
    emulator.seed("demo")
    store = Store(f"sqlite:///{tmp_path / 'budget.db'}")
    store.upgrade()
    with serve(emulator):
        board = emulator.board_id("Leads")
        one, two = (
            connector_for(emulator, clock=clock, per_minute=500_000, book=StoreBook(store, "monday", 500_000))
            for _ in range(2)
        )
        for n in range(6):  # the two take turns, as two processes would
            connector = one if n % 2 == 0 else two
            writes = [Write(f"p{n}-{k}", "create", {"name": f"P{n} {k}"}) for k in range(40)]
            assert all(r.ok for r in connector.write_batch(board, writes))
        assert [c for c in emulator.calls.calls() if c.status == 429] == []
        assert one.client.pacer.waited + two.client.pacer.waited >= 120
        one.close()
        two.close()
    store.dispose()


def test_a_complexity_refusal_is_waited_out_and_sent_again(emu: MondayEmulator) -> None:
    clock = FakeClock()
    monday = connector_for(emu, clock=clock)
    board = emu.board_id("Leads")
    monday.columns(board)
    emu.faults.add(FaultRule(path="/v2", error="complexity", count=1))
    [result] = monday.write_batch(board, [Write("c", "create", {"name": "After the wait"})])
    assert result.ok
    assert clock.now - 1_800_000_000.0 >= 60  # slept for the retry_in_seconds monday gave
    monday.close()


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"error": "server_error"}, RetryLater),
        ({"error": "unavailable"}, RetryLater),
        ({"error": "rate_limit"}, RetryLater),
        ({"error": "locked"}, RetryLater),
        ({"error": "temporarily_blocked"}, RetryLater),
        ({"error": "invalid_token"}, Fatal),
    ],
)
def test_failed_requests_raise_by_kind(
    emu: MondayEmulator, monday: MondayConnector, rule: dict[str, Any], expected: type[Exception]
) -> None:
    board = emu.board_id("Leads")
    monday.columns(board)
    emu.faults.add(FaultRule(path="/v2", count=1, **rule))
    with pytest.raises(expected):
        monday.write_batch(board, [Write("f", "create", {"name": "Faulty"})])


def test_reads_records_changes_and_every_item(emu: MondayEmulator, monday: MondayConnector) -> None:
    board = emu.board_id("Leads")
    seeded = emu.items(board)
    first = monday.read_changes(board, None)
    assert {r.id for r in first.records} == {i["id"] for i in seeded}
    assert first.watermark == max(i["updated_at"] for i in seeded)

    made = monday.write_batch(
        board, [Write(f"r{n}", "create", {"name": f"Read {n}", "status": "Quote"}) for n in range(120)]
    )
    ids = [str(r.target_id) for r in made]
    later = monday.read_changes(board, first.watermark)
    assert set(ids) <= {r.id for r in later.records}
    assert len(later.records) == len({r.id for r in later.records})

    every = list(monday.items(board))  # more than one page
    assert len(every) == len(seeded) + 120

    [record] = monday.read_records(board, [ids[5]])
    assert record.fields["name"] == "Read 5" and record.fields["status"] == "Quote"
    assert record.fields["__group__"] == seeded[0]["group_id"] and not record.deleted
    jane = next(iter(monday.read_records(board, [seeded[0]["id"]])))
    assert jane.fields["email"] == "jane@acme.example" and jane.fields["numbers"] == 12000
    assert jane.fields["person"] == [58_000_002]


@pytest.mark.parametrize(
    ("rule", "expected", "wait"),
    [
        ({"status": 429, "retry_after": 3}, RetryLater, 3.0),
        ({"error": "rate_limit", "retry_after": 5}, BudgetExhausted, 5.0),
        ({"error": "concurrency", "retry_after": 2}, RetryLater, 2.0),
        ({"status": 503, "retry_after": "Fri, 31 Dec 1999 23:59:59 GMT"}, RetryLater, 0.0),  # already past
    ],
)
def test_injected_limits_carry_the_wait_the_reply_asks_for(
    emu: MondayEmulator, monday: MondayConnector, rule: dict[str, Any], expected: type[Exception], wait: float
) -> None:
    board = emu.board_id("Leads")
    monday.columns(board)
    emu.faults.add(FaultRule(path="/v2", count=1, **rule))
    with pytest.raises(RetryLater) as caught:
        monday.write_batch(board, [Write("f", "create", {"name": "Faulty"})])
    assert type(caught.value) is expected and caught.value.retry_after == wait
