"""Each outcome the ledger records is also one concise log line: flow, records, target, outcome, latency."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync.config import load_config
from crmsync.connectors.base import Write, WriteResult
from crmsync.engine.queue import ClaimedChange, NewChange
from crmsync.engine.runtime import Runtime
from crmsync.errors import FixTheData, RetryLater

CONFIG = """
version: 1
store: {url: "sqlite:///%(db)s"}
connections:
  salesforce: {type: salesforce, auth: client_credentials, login_url: https://127.0.0.1:9,
               instance_url: https://127.0.0.1:9, client_id: abc, client_secret: s3cret-value}
  shop: {type: app}
flows:
  usage:
    source: shop
    target: salesforce
    object: Usage__c
    key: id
    fields:
      - {source: id, target: Ad_Id__c}
"""


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    path = tmp_path / "crmsync.yaml"
    path.write_text(CONFIG % {"db": tmp_path / "c.db"})
    rt = Runtime(load_config(path))
    yield rt
    rt.close()


def _claimed(rt: Runtime, *keys: str) -> list[ClaimedChange]:
    rt.queue.enqueue([NewChange("shop", "usage", key, "upsert", {"id": key}) for key in keys])
    return rt.queue.claim("w")


def test_an_applied_batch_is_one_info_line(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="crmsync.engine.ledger")
    changes = _claimed(runtime, "u1", "u2", "u3")
    done = [
        (c, Write(c.record_key, "upsert"), WriteResult(c.record_key, True, f"a0{i}", created=i < 2))
        for i, c in enumerate(changes)
    ]
    runtime.ledger.applied(runtime.flows["usage"], done)
    [line] = [r for r in caplog.records if r.name == "crmsync.engine.ledger"]
    assert line.levelno == logging.INFO
    message = line.getMessage()
    assert message.startswith("flow usage: 3 records applied to salesforce Usage__c (2 created, 1 updated)")
    assert "latency" in message and "\n" not in message


def test_a_retry_is_info_and_a_dead_letter_a_warning_with_the_vendor_message(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crmsync.engine.ledger")
    first, second = _claimed(runtime, "u1", "bad\x1bkey")
    runtime.ledger.retried(first, RetryLater("503 Service Unavailable\nfrom the vendor"))
    runtime.ledger.dead(second, FixTheData("INVALID_FIELD: Quantity__c"))
    retry, dead = (r for r in caplog.records if r.name == "crmsync.engine.ledger")
    assert retry.levelno == logging.INFO
    assert retry.getMessage().startswith("flow usage: record 'u1' failed, retried later (attempt 1, latency ")
    assert retry.getMessage().endswith("RetryLater: 503 Service Unavailable from the vendor")
    assert dead.levelno == logging.WARNING
    assert "record 'bad\\x1bkey' failed for good, now a dead letter" in dead.getMessage()
    assert "INVALID_FIELD: Quantity__c" in dead.getMessage() and "\x1b" not in dead.getMessage()
