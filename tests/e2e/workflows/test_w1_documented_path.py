"""The sales-to-trello recipe, driven as its header says, one process per command:
``crmsync sandbox --seed demo --env-file .env``, ``crmsync check --connect``, ``crmsync run``,
``crmsync webhooks ensure``; then a "[Delivery]" Task is created through Salesforce's REST API and
becomes a card with its Salesforce ids, and the card moved through Trello's REST API reaches the
reporting database (the recipe's default, ``reporting.db`` in the folder) and the Task. Only the
ports differ (free ones): the sandbox's through its port options, crmsync's through ``CRMSYNC_PORT``.
"""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.e2e.workflows.test_w2_documented_path import Session, free_port, start_crmsync, start_sandbox

from ..conftest import ROOT, wait_until

RECIPE = ROOT / "examples" / "sales-to-trello" / "crmsync.yaml"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    shutil.copy(RECIPE, tmp_path / "crmsync.yaml")
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MONDAY_", "SALESFORCE_", "TRELLO_", "CRMSYNC_", "REPORTING_"))
    }
    environ |= {"PYTHONUNBUFFERED": "1", "CRMSYNC_PORT": str(free_port())}
    box = Session(tmp_path, environ)
    try:
        yield box
    finally:
        box.stop()


class Salesforce:
    """Salesforce's REST API, as another application would call it (client credentials)."""

    def __init__(self, env: dict[str, str]) -> None:
        ca_file = env.get("SALESFORCE_CA_FILE")
        verify: Any = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self.client = httpx.Client(verify=verify, timeout=10)
        token = self.client.post(
            f"{env['SALESFORCE_LOGIN_URL']}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": env["SALESFORCE_CLIENT_ID"],
                "client_secret": env["SALESFORCE_CLIENT_SECRET"],
            },
        ).json()
        self.base = f"{token['instance_url']}/services/data/v62.0"
        self.client.headers["Authorization"] = f"Bearer {token['access_token']}"

    def query(self, soql: str) -> list[dict[str, Any]]:
        reply = self.client.get(f"{self.base}/query", params={"q": soql})
        reply.raise_for_status()
        return list(reply.json()["records"])

    def create(self, sobject: str, fields: dict[str, Any]) -> str:
        reply = self.client.post(f"{self.base}/sobjects/{sobject}", json=fields)
        reply.raise_for_status()
        return str(reply.json()["id"])


class Trello:
    def __init__(self, env: dict[str, str]) -> None:
        self.client = httpx.Client(
            base_url=env["TRELLO_API_URL"],
            params={"key": env["TRELLO_KEY"], "token": env["TRELLO_TOKEN"]},
            timeout=10,
        )

    def get(self, path: str, **params: Any) -> Any:
        reply = self.client.get(path, params=params)
        reply.raise_for_status()
        return reply.json()

    def board(self, name: str) -> dict[str, Any]:
        boards = self.get("/members/me/boards", fields="name")
        return next(b for b in boards if b["name"] == name)


def reporting_rows(folder: Path, card_id: str) -> list[dict[str, Any]]:
    path = folder / "reporting.db"
    if not path.exists():
        return []
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("crm_card"):
                return []
            query = sa.text("SELECT * FROM crm_card WHERE source_id = :id")
            return [dict(r) for r in conn.execute(query, {"id": card_id}).mappings()]
    finally:
        engine.dispose()


def test_the_documented_w1_path_turns_a_task_into_a_card_and_a_move_back_into_the_task(
    session: Session,
) -> None:
    env = start_sandbox(session)
    check = session.run("check", "--connect")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "crm_card" in check.stdout  # the reporting tables are prepared
    start_crmsync(session)
    ensure = session.run("webhooks", "ensure")
    assert ensure.returncode == 0, ensure.stdout + ensure.stderr
    assert "created" in ensure.stdout

    sf, trello = Salesforce(env), Trello(env)
    try:
        path_of_a_task(session, sf, trello)
    finally:
        sf.client.close()
        trello.client.close()


def path_of_a_task(session: Session, sf: Salesforce, trello: Trello) -> None:
    [opportunity] = sf.query("SELECT Id, Name FROM Opportunity WHERE Name = 'Stark stores'")
    task = sf.create("Task", {"Subject": "[Delivery] Stark stores roll-out", "WhatId": opportunity["Id"]})
    board = trello.board("Delivery")
    lists = {x["name"]: x["id"] for x in trello.get(f"/boards/{board['id']}/lists")}
    fields = {f["name"]: f["id"] for f in trello.get(f"/boards/{board['id']}/customFields")}

    def card() -> dict[str, Any] | None:
        cards = trello.get(f"/boards/{board['id']}/cards", customFieldItems="true")
        return next((c for c in cards if c["name"] == "[Delivery] Stark stores roll-out"), None)

    wait_until(lambda: len((card() or {}).get("customFieldItems") or []) >= 2, 60)
    made = card()
    assert made is not None and made["idList"] == lists["Backlog"] and "Stark stores" in made["desc"]
    items = {i["idCustomField"]: next(iter(i["value"].values())) for i in made["customFieldItems"]}
    assert items[fields["Salesforce Task Id"]] == task
    assert items[fields["Salesforce Opportunity Id"]] == opportunity["Id"]

    moved = trello.client.put(f"/cards/{made['id']}", params={"idList": lists["In progress"]})
    moved.raise_for_status()

    def task_status() -> str:
        [row] = sf.query(f"SELECT Id, Status FROM Task WHERE Id = '{task}'")
        return str(row["Status"])

    wait_until(lambda: task_status() == "In Progress", 60)
    wait_until(
        lambda: [r["list_name"] for r in reporting_rows(session.folder, made["id"])] == ["In progress"], 30
    )
    [row] = reporting_rows(session.folder, made["id"])
    assert (row["task_id"], row["opportunity_id"]) == (task, opportunity["Id"])
