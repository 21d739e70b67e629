"""The Trello connector against the Trello emulator: CRUD, custom fields of all five types,
``/batch`` reads, exactly-once creates under a hung reply, the shared rate governor in a burst
from two processes (no 429, ≥90 % of the budget), and board webhooks with catch-up."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmsync.connectors.base import Write
from crmsync.connectors.capabilities import Delivery, Receiver, WebhookRefused
from crmsync.connectors.trello import TrelloConnection, TrelloConnector
from crmsync.connectors.trello.subscriptions import catch_up, delete_webhook, ensure_webhook, list_webhooks
from crmsync.connectors.trello.webhooks import RecentActions, parse_delivery
from crmsync.sandbox.runner import serve
from crmsync.sandbox.server import BackgroundServer
from crmsync.sandbox.trello import TrelloEmulator
from crmsync.store.db import Store


def settings(emu: TrelloEmulator, **extra: Any) -> TrelloConnection:
    values: dict[str, Any] = {
        "type": "trello",
        "api_url": emu.base_url + "/1",
        "key": emu.key,
        "token": emu.token,
        "app_secret": emu.secret,
        "board": "Delivery",
        "default_list": "Backlog",
        **extra,
    }
    return TrelloConnection.model_validate(values)


@pytest.fixture
def emulator() -> Iterator[TrelloEmulator]:
    emu = TrelloEmulator(retry_delays=(0.05, 0.1, 0.15))
    emu.seed("demo")
    with serve(emu):
        yield emu


@pytest.fixture
def trello(emulator: TrelloEmulator) -> Iterator[TrelloConnector]:
    connector = TrelloConnector("board", settings=settings(emulator))
    yield connector
    connector.close()


def test_cards_and_custom_fields_of_all_five_types(trello: TrelloConnector, emulator: TrelloEmulator) -> None:
    made = trello.write_batch("CustomField", [Write("cf", "create", {"name": "Signed", "type": "checkbox"})])
    assert made[0].ok, made[0].error
    fields = {
        "name": "Renewal ACME",
        "desc": "Call back",
        "labels": ["Urgent"],
        "members": ["alice"],
        "due": "2026-05-01T12:00:00Z",
        "Stage": "Proposal",  # text
        "Amount": 1200.5,  # number
        "Close date": "2026-06-30",  # date
        "Signed": True,  # checkbox (value key "checked")
        "Update status": "Due",  # list option, by its text
    }
    [created] = trello.write_batch("Card", [Write("T-1", "create", fields)])
    assert created.ok and created.created, created.error
    [card] = trello.read_records("Card", [str(created.target_id)])
    assert card.fields["name"] == "Renewal ACME" and card.fields["desc"] == "Call back"
    assert (card.fields["list"], card.fields["labels"], card.fields["members"]) == (
        "Backlog",
        ["Urgent"],
        ["alice"],
    )
    assert card.fields["due"] == "2026-05-01T12:00:00.000Z"
    assert (card.fields["Stage"], card.fields["Amount"], card.fields["Signed"]) == ("Proposal", 1200.5, True)
    assert (card.fields["Close date"], card.fields["Update status"]) == ("2026-06-30T00:00:00.000Z", "Due")
    items = {i["idCustomField"]: i for i in emulator.card(str(created.target_id))["customFieldItems"]}
    signed = emulator.custom_field_id(trello.board_id(), "Signed")
    assert items[signed]["value"] == {"checked": "true"}

    change = {"list": "Won", "Signed": False, "Amount": None, "Update status": "Overdue", "desc": "Won it"}
    [updated] = trello.write_batch("Card", [Write("T-1", "update", change, target_id=created.target_id)])
    assert updated.ok, updated.error
    [card] = trello.read_records("Card", [str(created.target_id)])
    assert (card.fields["list"], card.fields["Signed"], card.fields["Update status"]) == (
        "Won",
        False,
        "Overdue",
    )
    assert "Amount" not in card.fields  # cleared: Trello lists only the fields that are set
    assert card.fields["desc"] == "Won it" and "crmsync:board:T-1" in emulator.card(card.id)["desc"]

    refused = trello.write_batch(
        "Card",
        [
            Write("bad-1", "update", {"Update status": "Maybe"}, target_id=card.id),
            Write("bad-2", "update", {"No such field": 1}, target_id=card.id),
            Write("bad-3", "update", {"name": "x"}, target_id="0" * 24),
        ],
    )
    assert [r.ok for r in refused] == [False, False, False]
    assert "Maybe" in str(refused[0].error) and "No such field" in str(refused[1].error)
    assert refused[2].error is not None and refused[2].error.status == 404

    [deleted] = trello.write_batch("Card", [Write("T-1", "delete", target_id=card.id)])
    assert deleted.ok
    assert [r.deleted for r in trello.read_records("Card", [card.id])] == [True]
    assert trello.write_batch("Card", [Write("T-1", "delete", target_id=card.id)])[0].ok  # gone already


def test_lists_labels_comments_and_upserts(trello: TrelloConnector) -> None:
    [lst] = trello.write_batch("List", [Write("l", "create", {"name": "Review"})])
    [label] = trello.write_batch("Label", [Write("g", "create", {"name": "VIP", "color": "purple"})])
    assert lst.ok and label.ok
    names = {r.fields["name"] for r in trello.records("List")}
    assert "Review" in names and "VIP" in {r.fields["name"] for r in trello.records("Label")}
    task = {"name": "Upserted", "list": "Review", "labels": ["VIP"], "Salesforce Task Id": "00T9"}
    upsert = Write("SF-9", "upsert", task, external_id_field="Salesforce Task Id", external_id="00T9")
    [first] = trello.write_batch("Card", [upsert])
    [again] = trello.write_batch(
        "Card",
        [
            Write(
                "other-key",
                "upsert",
                {"name": "Again"},
                external_id_field="Salesforce Task Id",
                external_id="00T9",
            )
        ],
    )
    assert first.ok and again.ok and first.target_id == again.target_id
    # an upsert whose fields leave the match field out sets it on the card: later ones match by it
    bare = Write(
        "SF-10", "upsert", {"name": "Bare"}, external_id_field="Salesforce Task Id", external_id="00T10"
    )
    [made] = trello.write_batch("Card", [bare])
    [record] = trello.read_records("Card", [str(made.target_id)])
    assert made.ok and made.created and record.fields["Salesforce Task Id"] == "00T10"
    other = Write(
        "SF-11", "upsert", {"name": "Bare"}, external_id_field="Salesforce Task Id", external_id="00T10"
    )
    [matched] = trello.write_batch("Card", [other])
    assert matched.target_id == made.target_id and not matched.created
    [comment] = trello.write_batch(
        "Comment", [Write("c", "create", {"idCard": first.target_id, "text": "Hello"})]
    )
    assert comment.ok
    texts = {r.fields["text"] for r in trello.records("Comment")}
    assert "Hello" in texts
    [edited] = trello.write_batch(
        "Comment",
        [Write("c", "update", {"idCard": first.target_id, "text": "Hi"}, target_id=comment.target_id)],
    )
    assert edited.ok and "Hi" in {r.fields["text"] for r in trello.records("Comment")}
    [archived] = trello.write_batch("List", [Write("l", "delete", target_id=lst.target_id)])
    assert (
        archived.ok and {r.id: r.fields["closed"] for r in trello.records("List")}[str(lst.target_id)] is True
    )


def test_reads_go_through_batch_ten_routes_a_request(
    trello: TrelloConnector, emulator: TrelloEmulator
) -> None:
    writes = [Write(f"k{i}", "create", {"name": f"Card {i}"}) for i in range(12)]
    ids = [str(r.target_id) for r in trello.write_batch("Card", writes)]
    emulator.calls.clear()
    records = list(trello.read_records("Card", ids))
    assert [r.id for r in records] == ids and [r.fields["name"] for r in records] == [
        f"Card {i}" for i in range(12)
    ]
    assert emulator.calls.count("GET", "/1/batch") == 2 and emulator.calls.total == 2


def test_a_create_whose_reply_hangs_leaves_exactly_one_card(emulator: TrelloEmulator) -> None:
    connector = TrelloConnector("board", settings=settings(emulator, timeout_seconds=1.0))
    board = connector.board_id()
    before = len(emulator.cards(board))
    emulator.faults.add(method="POST", path="^/1/cards$", hang=True, hang_seconds=30, count=1)
    [result] = connector.write_batch("Card", [Write("SF-T-77", "create", {"name": "Hung create"})])
    assert result.ok and result.created, result.error
    marked = [c for c in emulator.cards(board) if "crmsync:board:SF-T-77" in c["desc"]]
    assert [c["id"] for c in marked] == [result.target_id]
    assert len(emulator.cards(board)) == before + 1
    # the engine retrying the whole write later (another process, after a crash) finds it too
    again = Write("SF-T-77", "create", {"name": "Hung create"}, maybe_applied=True)
    [retried] = connector.write_batch("Card", [again])
    assert retried.target_id == result.target_id and len(emulator.cards(board)) == before + 1
    connector.close()


def test_only_a_create_that_may_have_landed_reads_the_board_first(
    trello: TrelloConnector, emulator: TrelloEmulator
) -> None:
    board = trello.board_id()
    trello.info()
    emulator.calls.clear()
    firsts = [Write(f"SF-T-{n}", "create", {"name": f"First {n}"}) for n in range(3)]
    made = trello.write_batch("Card", firsts)
    assert all(r.ok and r.created for r in made)
    assert emulator.calls.count("GET", f"/1/boards/{board}/cards/all") == 0
    assert emulator.calls.count("POST", "/1/cards") == 3
    # the engine sends the same creates again, saying they may have landed: one board read finds them
    emulator.calls.clear()
    again = [Write(w.key, "create", w.fields, maybe_applied=True) for w in firsts]
    found = trello.write_batch(
        "Card", [*again, Write("SF-T-9", "create", {"name": "New"}, maybe_applied=True)]
    )
    assert [r.target_id for r in found[:3]] == [r.target_id for r in made]
    assert found[3].ok and found[3].target_id not in {r.target_id for r in made}
    assert emulator.calls.count("GET", f"/1/boards/{board}/cards/all") == 1
    assert emulator.calls.count("POST", "/1/cards") == 1
    marked = [c for c in emulator.cards(board) if "crmsync:board:SF-T-" in c["desc"]]
    assert len(marked) == 4


def _burst(api_url: str, key: str, token: str, store_url: str, board: str, requests: int, out: Any) -> None:
    """One process: 4 threads sharing one connector read the board ``requests`` times."""
    conn = TrelloConnection.model_validate(
        {"type": "trello", "api_url": api_url, "key": key, "token": token, "board": board}
    )
    connector = TrelloConnector("board", settings=conn, store=Store(store_url))
    stamps: list[float] = []
    lock = threading.Lock()

    def read(_: int) -> None:
        connector.client.get(f"/boards/{board}", fields="name")
        with lock:
            stamps.append(time.time())

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(read, range(requests)))
    out.put((min(stamps), max(stamps), connector.client.governor.blocked))


@pytest.mark.slow
def test_two_processes_share_the_budget_without_a_429(emulator: TrelloEmulator, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    Store(store_url).upgrade()
    board = emulator.board_id("Delivery")
    emulator.calls.clear()
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    args = (emulator.base_url + "/1", emulator.key, emulator.token, store_url, board, 200, out)
    workers = [context.Process(target=_burst, args=args) for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    served = emulator.calls.count("GET", f"/1/boards/{board}")
    refused = sum(1 for c in emulator.calls.calls() if c.status == 429)
    assert (served, refused) == (400, 0)
    assert [blocked for _, _, blocked in results] == [0, 0]
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    # after the first window's 100, every further request had to wait for room in the window
    use = (served - 100) / (elapsed * 100 / 10.0)
    print(f"budget use: {use:.0%} in {elapsed:.1f} s")
    # never past the limit; how close to it a busy run gets (the ≥90 % target) is make bench's figure,
    # not a timing assertion on a shared machine: here only that the two processes kept it busy
    assert 0.5 <= use <= 1.0, f"{use:.0%} of the budget in {elapsed:.1f} s"


class Hook:
    """A callback endpoint checking each delivery as crmsync's receiver would."""

    def __init__(self, connector: TrelloConnector) -> None:
        self.connector = connector
        self.seen = RecentActions()
        self.changes: list[Any] = []
        self.refused = 0
        self.cond = threading.Condition()
        self.server = BackgroundServer(
            Starlette(routes=[Route("/webhooks/board", self.endpoint, methods=["HEAD", "POST"])])
        )

    @property
    def url(self) -> str:
        return self.server.url + "/webhooks/board"

    async def endpoint(self, request: Request) -> Response:
        if request.method == "HEAD":
            return Response(status_code=200)
        body = await request.body()
        delivery = Delivery(headers=dict(request.headers), body=body, url=self.url)
        try:
            self.connector.authenticate(delivery, Receiver(url_secret="-", callback_url=self.url))
        except WebhookRefused:
            with self.cond:
                self.refused += 1
                self.cond.notify_all()
            return Response(status_code=401)
        change = parse_delivery(body)
        with self.cond:
            if change is not None and self.seen.first_time(change.action_id):
                self.changes.append(change)
            self.cond.notify_all()
        return Response(status_code=200)

    def wait(self, count: int) -> None:
        deadline = time.monotonic() + 10
        with self.cond:
            while len(self.changes) < count:
                assert self.cond.wait(deadline - time.monotonic()), f"{len(self.changes)} of {count} changes"


def test_webhooks_are_ensured_verified_and_caught_up_after_a_deletion(
    trello: TrelloConnector, emulator: TrelloEmulator
) -> None:
    hook = Hook(trello)
    with hook.server:
        board = trello.board_id()
        first = ensure_webhook(trello.client, board, hook.url)
        assert first.created and first.webhook is not None and first.webhook.active
        assert not ensure_webhook(trello.client, board, hook.url).created  # already there
        emulator.faults.add(webhook="duplicate", count=1)
        card = emulator.create_card(emulator.list_id(board, "Backlog"), "From the board", by="alice")
        emulator.move_card(card["id"], emulator.list_id(board, "Won"), by="bob")
        hook.wait(2)
        emulator.dispatcher.wait_idle()
        assert [c.kind for c in hook.changes] == ["create", "move"]  # the duplicate was dropped
        assert hook.changes[1].fields["list"] == "Won"
        last_seen = hook.changes[-1].action_id

        # a forged delivery (signed with another secret) is refused
        forged = TrelloConnector("board", settings=settings(emulator, app_secret="x" * 64))
        with pytest.raises(WebhookRefused):
            forged.authenticate(
                Delivery({"x-trello-webhook": "AAAA"}, b"{}", hook.url), Receiver("-", hook.url)
            )

        assert delete_webhook(trello.client, first.webhook.id)
        assert not delete_webhook(trello.client, first.webhook.id)  # gone already
        emulator.set_custom_field(card["id"], "Amount", 900)
        emulator.comment(card["id"], "While nobody listened")
        emulator.delete_card(card["id"])
        emulator.dispatcher.wait_idle()
        assert len(hook.changes) == 2  # nothing delivered without a webhook

        missed = catch_up(trello.client, board, last_seen)
        assert [c.kind for c in missed] == ["custom_field", "comment", "delete"]
        assert missed[0].fields == {"Amount": 900}
        healed = ensure_webhook(trello.client, board, hook.url)
        assert healed.created and [w.id for w in list_webhooks(trello.client)] == [healed.webhook.id]  # type: ignore[union-attr]
        emulator.update_card(emulator.cards(board)[0]["id"], name="Renamed", by="alice")
        hook.wait(3)
        assert hook.changes[-1].kind == "rename" and hook.refused == 0


def test_polling_reads_what_changed_after_the_watermark(
    trello: TrelloConnector, emulator: TrelloEmulator
) -> None:
    everything = trello.read_changes("Card", None)
    assert len(everything.records) == len(emulator.cards(trello.board_id())) and everything.watermark
    board = trello.board_id()
    card = emulator.create_card(emulator.list_id(board, "Backlog"), "New one", by="alice")
    gone = emulator.cards(board)[0]["id"]
    emulator.delete_card(gone)
    changed = trello.read_changes("Card", everything.watermark)
    assert {(r.id, r.deleted) for r in changed.records} == {(card["id"], False), (gone, True)}
    assert trello.read_changes("Card", changed.watermark).records == []
