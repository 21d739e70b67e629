"""The usage-billing path from ``crmsync init``, exactly as docs/configuration.md tells a newcomer.

Each documented command runs as its own process in an empty folder (only the ports differ: the
test asks for free ones, so that it can run beside anything else); then the documented curl
request is sent as written, and the entry is looked for in the sandbox's Salesforce.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import ROOT, wait_until

DOC = ROOT / "docs" / "configuration.md"
HEADING = "### From `crmsync init` to a record in Salesforce"
FREE_PORTS = ["--salesforce-port", "0", "--trello-port", "0", "--monday-port", "0"]


def documented() -> tuple[list[str], str]:
    """The commands of the section's first block, and its curl request on one line."""
    section = DOC.read_text().split(HEADING, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    commands = [line.split("#", 1)[0].strip() for line in blocks[0].splitlines()]
    return [c for c in commands if c], blocks[1].replace("\\\n", " ").strip()


def argv(command: str, *extra: str) -> list[str]:
    words = shlex.split(command)
    assert words[0] == "crmsync", command
    return [sys.executable, "-m", "crmsync", *words[1:], *extra]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    return tmp_path / "app"


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment of a newcomer's shell: none of the variables the sandbox writes."""
    prefixes = ("SALESFORCE_", "MONDAY_", "TRELLO_", "CRMSYNC_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)} | {"PYTHONUNBUFFERED": "1"}


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in reversed(started):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_documented_usage_billing_path_from_init_lands_an_entry_in_salesforce(
    folder: Path, clean_env: dict[str, str], processes: list[subprocess.Popen[str]]
) -> None:
    commands, curl = documented()
    init, sandbox, check, token_create, run = commands

    def once(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv(command), cwd=folder, env=clean_env, capture_output=True, text=True, timeout=120
        )

    def start(command: str, log: Path, *extra: str) -> subprocess.Popen[str]:
        with log.open("w") as out:
            proc = subprocess.Popen(
                argv(command, *extra),
                cwd=folder,
                env=clean_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        processes.append(proc)
        return proc

    # crmsync init prints the very sandbox command the docs give
    written = once(init)
    assert written.returncode == 0, written.stderr
    printed = [
        line.strip() for line in written.stdout.splitlines() if line.strip().startswith("crmsync sandbox")
    ]
    assert printed == [sandbox]

    sandbox_log = folder.parent / "sandbox.log"
    box = start(sandbox, sandbox_log, *FREE_PORTS)
    wait_until(lambda: "sandbox running" in sandbox_log.read_text() or box.poll() is not None, 60)
    assert box.poll() is None, sandbox_log.read_text()
    env = dict(line.split("=", 1) for line in (folder / ".env").read_text().splitlines() if line)

    checked = once(check)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "objects and fields: OK" in checked.stdout

    created = once(token_create)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()

    run_log = folder.parent / "run.log"
    server = start(run, run_log, "--port", "0")
    wait_until(lambda: "crmsync running: http" in run_log.read_text() or server.poll() is not None, 60)
    match = re.search(r"crmsync running: (http://\S+)", run_log.read_text())
    assert match, run_log.read_text()

    # the documented request, as curl would send it
    words = shlex.split(curl.replace("$TOKEN", token))
    assert words[:3] == ["curl", "-X", "POST"]
    url = words[3].replace("http://127.0.0.1:8080", match.group(1))
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    body = words[words.index("-d") + 1]
    reply = httpx.post(url, content=body, headers=headers)
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"accepted": 1, "duplicates": 0}

    ca = ssl.create_default_context(cafile=env["SALESFORCE_CA_FILE"])
    access = httpx.post(
        f"{env['SALESFORCE_LOGIN_URL']}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": env["SALESFORCE_CLIENT_ID"],
            "client_secret": env["SALESFORCE_CLIENT_SECRET"],
        },
        verify=ca,
    ).json()["access_token"]

    def usage() -> list[dict[str, object]]:
        rows = httpx.get(
            f"{env['SALESFORCE_INSTANCE_URL']}/services/data/v66.0/query",
            params={"q": "SELECT Ad_Id__c, Quantity__c, Contract__c FROM Usage__c WHERE Ad_Id__c = 'ad-1'"},
            headers={"Authorization": f"Bearer {access}"},
            verify=ca,
        ).json()["records"]
        return list(rows)

    wait_until(lambda: bool(usage()), 60)
    [row] = usage()
    assert row["Quantity__c"] == 3 and row["Contract__c"] == "8008d00000000G9AAI"

    # the documented lock: the Fulfilled contract's entries are refused
    locked = httpx.post(
        url, content=body.replace("8008d00000000G9AAI", "8008d00000000GAAAY"), headers=headers
    )
    assert locked.status_code == 409, locked.text
