"""A dead letter alerts a person once; when the dead letters are dealt with, one notice says so."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crmsync.engine.queue import NewChange
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.server import BackgroundServer

from ..conftest import Crmsync, wait_until
from .test_usage_billing import contracts


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A local HTTP endpoint standing in for Slack or Telegram: apprise's json:// posts land here."""
    received: list[dict[str, object]] = []

    async def notify(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        return JSONResponse({})

    with BackgroundServer(Starlette(routes=[Route("/", notify, methods=["POST"])])) as server:
        yield f"json://127.0.0.1:{server.port}/", received


def test_one_alert_for_dead_letters_and_one_notice_when_they_are_dealt_with(
    salesforce: SalesforceEmulator,
    crmsync_factory: Callable[..., Crmsync],
    receiver: tuple[str, list[dict[str, object]]],
) -> None:
    url, received = receiver
    crm = crmsync_factory(workers=1, alerts=url)
    contract = contracts(salesforce, "Activated")[0]
    # Changes Salesforce refuses (STRING_TOO_LONG): ingest would refuse them at the door once it knows
    # the field's length, so they come in as changes accepted before that (straight into the queue).
    crm.runtime.queue.enqueue(
        [
            NewChange(
                "service_app",
                "usage",
                key,
                "upsert",
                {"ad_id": key, "contract_id": contract, "product": "X" * 300},
            )
            for key in ("bad-1", "bad-2", "bad-3")
        ]
    )
    wait_until(lambda: crm.runtime.queue.stats().dead == 3)
    wait_until(lambda: len(received) >= 1)
    assert len(received) == 1 and "usage" in json.dumps(received[0])

    letters = crm.runtime.queue.dead_letters()
    crm.runtime.queue.discard([letter.id for letter in letters])
    wait_until(lambda: len(received) >= 2)  # the watchdog notices they are gone
    assert len(received) == 2 and "resolved" in json.dumps(received[1]).lower()
