"""A lock rule whose answer is not cached asks the target, bounded in time, before the records
join a group commit: a locked parent refuses the request (409, nothing stored), a slow target lets
it through (the worker asks again before writing), and a cached answer asks nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from crmsync.engine.runtime import Runtime
from crmsync.store import schema, tokens

from .conftest import MakeRuntime, OpenClient
from .test_ingest import CONFIG

LOCKED = CONFIG.replace(
    "      - {source: status, target: Status__c, owner: target}\n",
    "      - {source: status, target: Status__c, owner: target}\n"
    "      - {source: contract_id, target: Contract__c}\n"
    "    lock: {object: Contract, key: contract_id, when: \"Status = 'Fulfilled'\", "
    "message: 'contract {contract_id} is fulfilled', check_timeout_seconds: 0.5}\n",
)


class Target:
    """Answers which contracts are fulfilled, after ``delay`` seconds."""

    def __init__(self) -> None:
        self.fulfilled: set[str] = set()
        self.delay = 0.0
        self.asked: list[list[str]] = []
        self.threads: set[str] = set()

    def matching(self, object_name: str, ids: Sequence[str], condition: str) -> set[str]:
        assert object_name == "Contract" and condition == "Status = 'Fulfilled'"
        self.asked.append(sorted(ids))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return {i for i in ids if i in self.fulfilled}


@pytest.fixture
def api(make_runtime: MakeRuntime, open_client: OpenClient) -> tuple[TestClient, Runtime, Target]:
    runtime = make_runtime(LOCKED)
    target = Target()
    runtime.queryable = lambda name, where=None: target  # type: ignore[method-assign,assignment,return-value]
    return open_client(runtime, bearer=tokens.create_token(runtime.store, "shop")), runtime, target


def post(client: TestClient, key: str, contract: str) -> Any:
    body = {"key": key, "fields": {"contract_id": contract, "amount": 1}}
    return client.post("/api/v1/flows/orders/records", content=json.dumps(body))


def stored(runtime: Runtime) -> list[str]:
    with runtime.store.read() as conn:
        return list(
            conn.execute(sa.select(schema.changes.c.record_key).order_by(schema.changes.c.id)).scalars()
        )


def test_a_fulfilled_parent_refuses_the_records_and_an_open_one_is_asked_about_once(
    api: tuple[TestClient, Runtime, Target],
) -> None:
    client, runtime, target = api
    target.fulfilled = {"c-done"}
    refused = post(client, "o1", "c-done")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "locked"
    assert "contract c-done is fulfilled" in refused.json()["error"]["message"]
    assert post(client, "o2", "c-open").status_code == 202
    assert post(client, "o3", "c-open").status_code == 202  # answered from the lock cache
    assert post(client, "o4", "c-done").status_code == 409
    assert target.asked == [["c-done"], ["c-open"]]
    assert all(name.startswith("lock-check") for name in target.threads)
    assert stored(runtime) == ["o2", "o3"]


def test_a_target_slower_than_the_check_timeout_lets_the_records_in(
    api: tuple[TestClient, Runtime, Target],
) -> None:
    client, runtime, target = api
    target.fulfilled = {"c-done"}
    target.delay = 1.5
    started = time.monotonic()
    r = post(client, "o1", "c-done")
    assert r.status_code == 202, r.text  # the worker asks again before writing
    assert time.monotonic() - started < 1.4
    assert stored(runtime) == ["o1"]
