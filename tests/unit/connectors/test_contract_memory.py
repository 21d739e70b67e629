"""The connector contract, run against the in-memory connector."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from crmsync.connectors.capabilities import Delivery, Receiver
from crmsync.connectors.contract import ConnectorContract, Harness
from crmsync.connectors.memory import MemoryConnection, MemoryConnector, MemorySystem
from crmsync.connectors.memory.signing import sign

SECRET = "contract-secret"


class MemoryHarness(Harness):
    object_name = "Contact"
    key_field = "Ext"

    def __init__(self) -> None:
        self.system_name = f"contract-{uuid.uuid4().hex}"
        self.system = MemorySystem.named(self.system_name)
        self.connector = self.connect()

    def connect(self, **settings: Any) -> MemoryConnector:
        values: dict[str, Any] = {
            "type": "memory",
            "system": self.system_name,
            "webhook_secret": SECRET,
            "daily_calls": 1000,
            "refuse": [{"field": "Email", "matches": r"@refused\.", "message": "e-mail domain refused"}],
            **settings,
        }
        return MemoryConnector("memory", MemoryConnection.model_validate(values))

    def new_fields(self, n: int) -> dict[str, Any]:
        return {"Name": f"Contact {n}", "Email": f"c{n}@example.com", "Ext": self.key(n)}

    def changed_fields(self, n: int) -> dict[str, Any]:
        return {"Name": f"Renamed {n}", "Email": f"r{n}@example.com"}

    def refused_fields(self) -> dict[str, Any]:
        return {"Name": "Refused", "Email": "x@refused.example"}

    def far_get(self, record_id: str, object_name: str | None = None) -> Mapping[str, Any] | None:
        found = self.system.get(object_name or self.object_name, record_id)
        return found.fields if found is not None and not found.deleted else None

    def far_ids(self, object_name: str | None = None) -> set[str]:
        return {r.id for r in self.system.records(object_name or self.object_name)}

    def far_create(self, fields: Mapping[str, Any]) -> str:
        return self.system.insert(self.object_name, fields)

    def far_update(self, record_id: str, fields: Mapping[str, Any]) -> None:
        self.system.update(self.object_name, record_id, fields)

    def far_delete(self, record_id: str) -> None:
        self.system.delete(self.object_name, record_id)

    def fail_next_call(self) -> None:
        self.system.fail_next()

    def refused_connector(self) -> MemoryConnector:
        return self.connect(token="not-the-system-token")

    def deliveries(self, record_id: str) -> tuple[Receiver, Delivery, list[Delivery]]:
        body = json.dumps(
            {
                "delivery_id": "d-1",
                "system": self.system_name,
                "object": self.object_name,
                "id": record_id,
                "operation": "update",
                "fields": {"Name": "Changed"},
                "modified": "2026-01-01T00:00:00.000001Z",
            }
        ).encode()
        url = "http://crmsync.test/webhooks/memory"
        good = Delivery(sign(body, SECRET), body, url)
        tampered = body.replace(b"Changed", b"Stolen!")
        forged = [
            Delivery(sign(body, "another-secret"), body, url),  # signed with another secret
            Delivery(good.headers, tampered, url),  # a body the signature does not cover
            Delivery(sign(body, SECRET, now=0), body, url),  # an old delivery replayed
            Delivery({}, body, url),  # not signed
            Delivery({}, body, url, path_secret="guessed"),  # a wrong URL secret
        ]
        return Receiver(url_secret="the-url-secret"), good, forged

    def webhook_url(self) -> str:
        return "http://crmsync.test/webhooks/memory"

    def condition(self, value: str) -> str:
        return f"Ext = '{value}'"

    def related_case(
        self, refused: bool
    ) -> tuple[str, Mapping[str, Any], list[tuple[str, Mapping[str, Any], Mapping[str, str]]]]:
        account = {"Name": "Acme"}
        contact = self.refused_fields() if refused else self.new_fields(121)
        return "Contact", contact, [("Account", account, {})]

    def spend_budget(self) -> None:
        for _ in range(1000):
            self.connector.check()


class TestMemoryContract(ConnectorContract):
    connector_class = MemoryConnector
    upserts = True
    replays_creates = True
    polls_deletions = True
    guards_budget = True

    @pytest.fixture
    def harness(self) -> Iterator[Harness]:
        harness = MemoryHarness()
        yield harness
        MemorySystem.discard(harness.system_name)
