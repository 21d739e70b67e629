"""``crmsync sandbox``: starts the three emulators, prints and writes their credentials, stops cleanly."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from crmsync.sandbox.runner import ENV_KEYS

from ..conftest import wait_until


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    env_file = tmp_path / "sandbox.env"
    env_file.unlink(missing_ok=True)
    log = tmp_path / "sandbox.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "crmsync", "sandbox",
                "--salesforce-port", "0", "--trello-port", "0", "--monday-port", "0",
                "--dir", str(tmp_path / "keys"), "--env-file", str(env_file), *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    wait_until(lambda: env_file.exists() or proc.poll() is not None, 60)
    assert proc.poll() is None, log.read_text()
    return proc, env_file


def test_sandbox_prints_and_writes_credentials_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc, env_file = start(tmp_path, "--seed", "demo")
    try:
        env = read_env(env_file)
        assert list(env) == list(ENV_KEYS)
        printed = (tmp_path / "sandbox.log").read_text()
        for key, value in env.items():
            assert f"{key}={value}" in printed
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        ca = ssl.create_default_context(cafile=env["SALESFORCE_CA_FILE"])
        versions = httpx.get(f"{env['SALESFORCE_INSTANCE_URL']}/services/data/", verify=ca)
        assert versions.status_code == 200 and versions.json()[-1]["version"]
        board = httpx.get(
            f"{env['TRELLO_API_URL']}/members/me/boards",
            params={"key": env["TRELLO_KEY"], "token": env["TRELLO_TOKEN"]},
        )
        assert any(b["name"] == "Delivery" for b in board.json())
        me = httpx.post(
            env["MONDAY_API_URL"],
            json={"query": "{ me { id } }"},
            headers={"Authorization": env["MONDAY_TOKEN"]},
        )
        assert me.status_code == 200 and me.json()["data"]["me"]["id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert "sandbox stopped" in (tmp_path / "sandbox.log").read_text()


def test_state_file_keeps_records_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    proc, env_file = start(tmp_path, "--state", str(state), "--no-tls")
    try:
        env = read_env(env_file)
        token = httpx.post(
            f"{env['SALESFORCE_LOGIN_URL']}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": env["SALESFORCE_CLIENT_ID"],
                "client_secret": env["SALESFORCE_CLIENT_SECRET"],
            },
        ).json()["access_token"]
        created = httpx.post(
            f"{env['SALESFORCE_INSTANCE_URL']}/services/data/v66.0/sobjects/Account",
            json={"Name": "Kept Ltd"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert state.exists()
    proc, env_file = start(tmp_path, "--state", str(state), "--no-tls")
    try:
        env = read_env(env_file)
        summary = httpx.get(f"{env['SALESFORCE_INSTANCE_URL']}/_sandbox/state").json()
        assert "Kept Ltd" in state.read_text() and summary
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@contextmanager
def salesforce_session(env: dict[str, str]) -> Iterator[httpx.Client]:
    """A client logged in to the (plain HTTP) Salesforce emulator with the client-credentials flow."""
    form = {
        "grant_type": "client_credentials",
        "client_id": env["SALESFORCE_CLIENT_ID"],
        "client_secret": env["SALESFORCE_CLIENT_SECRET"],
    }
    with httpx.Client(base_url=env["SALESFORCE_INSTANCE_URL"]) as http:
        token = http.post("/services/oauth2/token", data=form).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


def test_a_killed_sandbox_keeps_the_state_it_saved_while_running(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    proc, env_file = start(tmp_path, "--state", str(state), "--save-every", "0.2", "--no-tls")
    try:
        with salesforce_session(read_env(env_file)) as http:
            created = http.post("/services/data/v66.0/sobjects/Account", json={"Name": "Survivor Ltd"})
            assert created.status_code == 201
        wait_until(lambda: state.exists() and "Survivor Ltd" in state.read_text(), 30)
    finally:
        proc.kill()  # no chance to save at exit
        proc.wait(timeout=30)
    proc, env_file = start(tmp_path, "--state", str(state), "--no-tls")
    try:
        with salesforce_session(read_env(env_file)) as http:
            soql = "SELECT Name FROM Account WHERE Name = 'Survivor Ltd'"
            found = http.get("/services/data/v66.0/query", params={"q": soql})
            assert found.status_code == 200 and found.json()["totalSize"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "crmsync",
                "sandbox",
                "--salesforce-port",
                str(port),
                "--dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "cannot start the sandbox" in result.stderr and "in use" in result.stderr
