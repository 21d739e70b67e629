"""The Monday.com ⇄ Salesforce recipe, driven as its header and the docs say, one process per
command: ``crmsync sandbox --seed demo --env-file .env``, ``crmsync check --connect``,
``crmsync run``, ``crmsync webhooks ensure``; then a lead is created through monday's GraphQL API
and lands in Salesforce. Only the ports differ (free ones, so that the test can run beside
anything else): the sandbox's through its documented port options, crmsync's through the
recipe's ``CRMSYNC_PORT``.

The second test does the same with only a personal token configured (no app token, no signing
secret): the webhooks are then protected by a secret in their URL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import ROOT, wait_until

RECIPE = ROOT / "examples" / "monday-salesforce" / "crmsync.yaml"
CRMSYNC = str(Path(sys.executable).with_name("crmsync"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_env(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


class Session:
    """A folder holding the recipe, and the processes started in it."""

    def __init__(self, folder: Path, environ: dict[str, str]) -> None:
        self.folder = folder
        self.environ = environ
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.folder / f"{args[0]}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [CRMSYNC, *args], cwd=self.folder, env=self.environ, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append((proc, log))
        return proc, log

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CRMSYNC, *args], cwd=self.folder, env=self.environ, capture_output=True, text=True, timeout=120
        )

    def stop(self) -> None:
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    shutil.copy(RECIPE, tmp_path / "crmsync.yaml")
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("MONDAY_", "SALESFORCE_", "CRMSYNC_"))
    }
    environ |= {"PYTHONUNBUFFERED": "1", "CRMSYNC_PORT": str(free_port())}
    box = Session(tmp_path, environ)
    try:
        yield box
    finally:
        box.stop()


def start_sandbox(session: Session) -> dict[str, str]:
    proc, log = session.start(
        "sandbox", "--seed", "demo", "--env-file", ".env",
        "--salesforce-port", "0", "--trello-port", "0", "--monday-port", "0",
    )  # fmt: skip
    env_file = session.folder / ".env"
    wait_until(lambda: "MONDAY_SIGNING_SECRET" in read_env(env_file) or proc.poll() is not None, 60)
    assert proc.poll() is None, log.read_text()
    return read_env(env_file)


def start_crmsync(session: Session) -> str:
    proc, log = session.start("run")
    base = f"http://127.0.0.1:{session.environ['CRMSYNC_PORT']}"

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 60)
    return base


def gql(env: dict[str, str], query: str, **variables: Any) -> dict[str, Any]:
    reply = httpx.post(
        env["MONDAY_API_URL"],
        json={"query": query, "variables": variables},
        headers={"Authorization": env["MONDAY_TOKEN"]},
        timeout=10,
    )
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    assert "errors" not in body, body
    return body["data"]


def create_lead(env: dict[str, str], name: str) -> str:
    boards = gql(env, "query { boards(limit: 50) { id name } }")["boards"]
    board = next(b["id"] for b in boards if b["name"] == "Leads")
    values = {
        "status": {"label": "Qualified"},
        "email": {"email": "ada@engines.example", "text": "ada@engines.example"},
        "text": "Analytical Engines",
        "date4": {"date": "2027-03-01"},
    }
    made = gql(
        env,
        "mutation ($b: ID!, $n: String!, $v: JSON) "
        "{ create_item(board_id: $b, item_name: $n, column_values: $v) { id } }",
        b=board,
        n=name,
        v=json.dumps(values),
    )
    return str(made["create_item"]["id"])


def salesforce_leads(env: dict[str, str], last_name: str) -> list[dict[str, Any]]:
    ca_file = env.get("SALESFORCE_CA_FILE")
    verify: Any = ssl.create_default_context(cafile=ca_file) if ca_file else True
    with httpx.Client(verify=verify, timeout=10) as client:
        token = client.post(
            f"{env['SALESFORCE_LOGIN_URL']}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": env["SALESFORCE_CLIENT_ID"],
                "client_secret": env["SALESFORCE_CLIENT_SECRET"],
            },
        ).json()
        reply = client.get(
            f"{token['instance_url']}/services/data/v62.0/query",
            params={"q": f"SELECT Id, LastName, Email, Company FROM Lead WHERE LastName = '{last_name}'"},
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
    reply.raise_for_status()
    return list(reply.json()["records"])


def test_the_documented_w2_path_delivers_signed_webhooks_end_to_end(session: Session) -> None:
    env = start_sandbox(session)
    assert env["MONDAY_APP_TOKEN"] and env["MONDAY_SIGNING_SECRET"]

    check = session.run("check", "--connect")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "signed by monday" in check.stdout and "warning" not in check.stdout

    base = start_crmsync(session)
    ensure = session.run("webhooks", "ensure")
    assert ensure.returncode == 0, ensure.stdout + ensure.stderr
    assert "created" in ensure.stdout

    create_lead(env, "Ada Lovelace")
    wait_until(lambda: len(salesforce_leads(env, "Lovelace")) == 1, 60)
    lead = salesforce_leads(env, "Lovelace")[0]
    assert (lead["Email"], lead["Company"]) == ("ada@engines.example", "Analytical Engines")

    status = session.run("status", "--json")
    assert '"webhooks_refused": {}' in status.stdout, status.stdout
    assert 'crmsync_webhooks_refused_total{connection="monday"}' not in httpx.get(f"{base}/metrics").text


def test_with_only_a_personal_token_the_webhooks_carry_a_secret_in_their_url(session: Session) -> None:
    env = start_sandbox(session)
    # a user without a monday app: no app token, no signing secret
    (session.folder / ".env").write_text(
        "".join(
            f"{k}={v}\n" for k, v in env.items() if k not in ("MONDAY_APP_TOKEN", "MONDAY_SIGNING_SECRET")
        )
    )
    check = session.run("check", "--connect")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "carries a secret" in check.stdout and "warning" not in check.stdout

    base = start_crmsync(session)
    ensure = session.run("webhooks", "ensure")
    assert ensure.returncode == 0, ensure.stdout + ensure.stderr

    create_lead(env, "Grace Hopper")
    wait_until(lambda: len(salesforce_leads(env, "Hopper")) == 1, 60)

    # an unsigned delivery to the URL without the secret is refused, counted and shown
    forged = {"event": {"type": "update_column_value", "boardId": 1, "pulseId": 1, "triggerUuid": "f"}}
    assert httpx.post(f"{base}/webhooks/monday/monday", json=forged).status_code == 401
    status = session.run("status", "--json")
    assert '"count": 1' in status.stdout, status.stdout
    assert 'crmsync_webhooks_refused_total{connection="monday"} 1.0' in httpx.get(f"{base}/metrics").text


def test_a_signing_secret_with_only_a_personal_token_is_warned_about(session: Session) -> None:
    env = start_sandbox(session)
    (session.folder / ".env").write_text(
        "".join(f"{k}={v}\n" for k, v in env.items() if k != "MONDAY_APP_TOKEN")
    )
    check = session.run("check", "--connect")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "warning: signing_secret is set, but no app_token" in check.stdout
