"""The in-memory connector's own behaviour beyond the contract: its faults, budget, pages, webhooks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pydantic import ValidationError

from crmsync.connectors.base import Write
from crmsync.connectors.capabilities import Delivery, Receiver
from crmsync.connectors.memory import MemoryConnection, MemoryConnector, MemorySystem
from crmsync.errors import BudgetExhausted, ConfigError, Fatal, FixTheData, RetryLater


@pytest.fixture
def system_name() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex}"
    yield name
    MemorySystem.discard(name)


def connect(system_name: str, name: str = "mem", **settings: Any) -> MemoryConnector:
    values = {"type": "memory", "system": system_name, **settings}
    return MemoryConnector(name, MemoryConnection.model_validate(values))


def test_two_connections_naming_one_system_share_its_records(system_name: str) -> None:
    a = connect(system_name, "a")
    b = connect(system_name, "b")
    [made] = a.write_batch("Lead", [Write("k", "create", {"Name": "Ada"})])
    [read] = b.read_records("Lead", [str(made.target_id)])
    assert read.fields == {"Name": "Ada"}
    system = MemorySystem.named(system_name)
    assert [(e.operation, e.by) for e in system.journal] == [("create", "a")]
    assert system.calls == {"a": 1, "b": 1}


def test_stamps_strictly_increase_even_when_the_clock_stands_still(system_name: str) -> None:
    import datetime as dt

    frozen = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    system = MemorySystem("still", clock=lambda: frozen)
    stamps = [system.stamp() for _ in range(3)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_changes_come_in_pages_of_page_size(system_name: str) -> None:
    conn = connect(system_name, page_size=2)
    system = MemorySystem.named(system_name)
    ids = [system.insert("Lead", {"n": n}) for n in range(5)]
    mark = None
    pages = []
    while True:
        batch = conn.read_changes("Lead", mark, fields=["n"])
        if not batch.records:
            break
        pages.append([r.id for r in batch.records])
        mark = batch.watermark
    assert pages == [ids[:2], ids[2:4], ids[4:]]


def test_refusals_by_equals_and_by_pattern(system_name: str) -> None:
    conn = connect(
        system_name,
        refuse=[{"field": "Status", "equals": "Banned"}, {"field": "Email", "matches": "@spam\\."}],
    )
    results = conn.write_batch(
        "Lead",
        [
            Write("1", "create", {"Status": "Banned"}),
            Write("2", "create", {"Email": "a@spam.example"}),
            Write("3", "create", {"Status": "Open", "Email": "a@ok.example"}),
        ],
    )
    assert [type(r.error) for r in results] == [FixTheData, FixTheData, type(None)]
    assert results[0].error is not None and results[0].error.vendor_code == "REFUSED"


def test_a_refusal_needs_a_test() -> None:
    with pytest.raises(ValidationError):
        MemoryConnection.model_validate({"type": "memory", "refuse": [{"field": "Status"}]})


@pytest.mark.parametrize(
    ("kind", "error"), [("retry", RetryLater), ("budget", BudgetExhausted), ("fatal", Fatal)]
)
def test_injected_failures_fail_the_next_calls_only(system_name: str, kind: Any, error: type) -> None:
    conn = connect(system_name)
    MemorySystem.named(system_name).fail_next(2, kind, retry_after=3.0)
    for _ in range(2):
        with pytest.raises(error) as caught:
            conn.check()
    assert type(caught.value) is error
    conn.check()


def test_fail_prob_fails_some_calls_and_a_seed_repeats_them(system_name: str) -> None:
    def outcomes() -> list[bool]:
        conn = connect(system_name, fail_prob=0.5, seed=7)
        seen = []
        for _ in range(40):
            try:
                conn.check()
                seen.append(True)
            except RetryLater:
                seen.append(False)
        return seen

    first = outcomes()
    assert 5 < first.count(False) < 35
    assert outcomes() == first


def test_calls_past_the_minute_limit_wait_for_the_next_minute(system_name: str) -> None:
    conn = connect(system_name, calls_per_minute=2)
    conn.check()
    conn.check()
    with pytest.raises(BudgetExhausted) as caught:
        conn.check()
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 60


def test_refused_credentials_and_a_changed_system_token(system_name: str) -> None:
    conn = connect(system_name)
    conn.check()
    MemorySystem.named(system_name).token = "rotated"
    with pytest.raises(Fatal, match="refused the credentials"):
        conn.check()
    connect(system_name, token="rotated").check()


def test_related_records_refer_to_each_other(system_name: str) -> None:
    conn = connect(system_name)
    ids = conn.create_related(
        "Contact",
        {"LastName": "Lovelace"},
        [("Account", {"Name": "Acme"}, {})],
        refs={"AccountId": "Account"},
    )
    system = MemorySystem.named(system_name)
    contact = system.get("Contact", ids["Contact"])
    assert contact is not None and contact.fields["AccountId"] == ids["Account"]
    with pytest.raises(ConfigError, match="not created before"):
        conn.create_related("Contact", {}, [], refs={"AccountId": "Account"})


def test_views_bind_parameters_and_never_splice_them(system_name: str) -> None:
    conn = connect(system_name)
    system = MemorySystem.named(system_name)
    system.insert("Lead", {"Name": "O'Brien", "Status": "Open"})
    system.insert("Lead", {"Name": "Smith", "Status": "Closed"})
    rows = conn.query_view("SELECT Name FROM Lead WHERE Name = :n", {"n": "O'Brien"})
    assert rows == [{"Name": "O'Brien"}]
    assert conn.query_view("SELECT Name FROM Lead WHERE Name = :n", {"n": "' OR '1'='1"}) == []
    assert [r["Name"] for r in conn.query_view("select * from Lead where Status != 'Open' limit 5", {})] == [
        "Smith"
    ]
    with pytest.raises(ConfigError):
        conn.query_view("DELETE FROM Lead", {})


def test_changes_of_a_subscribed_object_are_delivered_signed(system_name: str) -> None:
    conn = connect(system_name, webhook_secret="s3cret")
    system = MemorySystem.named(system_name)
    report = conn.ensure_subscriptions("Lead", "http://crmsync.test/webhooks/mem", attempt="1")
    assert len(report.created) == 1
    rid = system.insert("Lead", {"Name": "Ada"})
    system.update("Lead", rid, {"Name": "Ada L."})
    posted: list[tuple[str, Mapping[str, str], bytes]] = []
    answers = iter([500, 200, 200])

    def post(url: str, headers: Mapping[str, str], body: bytes) -> int:
        posted.append((url, headers, body))
        return next(answers)

    assert system.flush(post) == [500, 200]
    assert len(system.outbox()) == 1  # the refused one waits for the next flush
    assert system.flush(post) == [200]
    first = posted[-1]
    conn.authenticate(Delivery(first[1], first[2], first[0]), Receiver(url_secret="x"))
    [event] = conn.parse(first[2])
    assert (event.record_id, event.operation, event.created) == (rid, "upsert", True)
    assert event.fields == {"Name": "Ada"}


def test_a_memory_connection_is_read_from_crmsync_yaml_with_its_secrets_hidden(tmp_path: Any) -> None:
    from crmsync.config import load_config
    from crmsync.connectors import registry

    path = tmp_path / "crmsync.yaml"
    path.write_text(
        "connections:\n"
        "  crm:\n"
        "    type: memory\n"
        "    system: crm\n"
        "    token: s3cret-token\n"
        "    webhook_secret: s3cret-signing\n"
        "    refuse: [{field: Email, matches: '@invalid$'}]\n"
    )
    config = load_config(path)
    shown = str(config.redacted())
    assert "s3cret" not in shown
    connector = registry.create("crm", config.connections["crm"])
    assert isinstance(connector, MemoryConnector) and connector.kind == "memory"
    assert connector.settings.refuse[0].refuses({"Email": "a@invalid"})
    path.write_text("connections:\n  crm: {type: memory, fail_probability: 0.1}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert any("fail_probability" in p and "did you mean 'fail_prob'" in p for p in refused.value.problems)
