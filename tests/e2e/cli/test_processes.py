"""The commands as a user runs them: tokens, run/serve/worker processes, status, stopping cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.store.schema import metadata

from ...integration.conftest import server_database
from ..conftest import wait_until, write_config


def crmsync(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crmsync", *args], capture_output=True, text=True, check=check, timeout=120
    )


@pytest.fixture
def config(tmp_path: Path, salesforce: SalesforceEmulator) -> Path:
    return write_config(tmp_path, salesforce)


@contextmanager
def started(*args: str, log: Path, ready: str) -> Iterator[subprocess.Popen[str]]:
    """``crmsync ARGS`` running in the background, its output in ``log``, once ``ready`` is printed."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "crmsync", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        wait_until(lambda: ready in log.read_text() or proc.poll() is not None, 60)
        assert ready in log.read_text(), log.read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextmanager
def running_crmsync(config: Path, log: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    with started(
        "-v", "run", "-c", str(config), "--port", "0", log=log, ready="crmsync running: http"
    ) as proc:
        match = re.search(r"crmsync running: (http://\S+)", log.read_text())
        assert match, log.read_text()
        yield proc, match.group(1), log


@pytest.fixture
def running(config: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    with running_crmsync(config, tmp_path / "run.log") as found:
        yield found


def test_tokens_are_created_listed_and_revoked(config: Path) -> None:
    created = crmsync("token", "create", "billing-app", "-c", str(config))
    token = created.stdout.strip()
    assert token.startswith("cs_") and "shown only now" in created.stderr
    listed = crmsync("token", "list", "-c", str(config)).stdout
    assert "billing-app" in listed and token not in listed
    again = crmsync("token", "create", "billing-app", "-c", str(config), check=False)
    assert again.returncode == 1 and "billing-app" in again.stderr
    assert "revoked" in crmsync("token", "revoke", "billing-app", "-c", str(config)).stdout
    missing = crmsync("token", "revoke", "nobody", "-c", str(config), check=False)
    assert missing.returncode == 1 and "no active token named 'nobody'" in missing.stderr


def test_run_takes_records_applies_them_and_stops_cleanly_on_sigterm(
    config: Path, running: tuple[subprocess.Popen[str], str, Path], salesforce: SalesforceEmulator
) -> None:
    proc, url, log = running
    token = crmsync("token", "create", "app", "-c", str(config)).stdout.strip()
    contract = next(c["Id"] for c in salesforce.records("Contract") if c.get("Status") == "Activated")
    reply = httpx.post(
        f"{url}/api/v1/flows/usage/records",
        json={"key": "cli-1", "fields": {"contract_id": contract, "product": "S", "quantity": 2}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 202
    wait_until(lambda: any(r.get("Ad_Id__c") == "cli-1" for r in salesforce.records("Usage__c")))
    status = json.loads(crmsync("status", "--json", "-c", str(config)).stdout)
    assert status["pending"] == 0 and status["dead_letters"] == 0
    assert status["api_budget"]["salesforce"]["limit"] > 0
    assert httpx.get(f"{url}/readyz").status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()


def test_a_bad_configuration_is_reported_not_run(tmp_path: Path) -> None:
    bad = tmp_path / "crmsync.yaml"
    bad.write_text("version: 1\nflows:\n  usage:\n    source: nowhere\n")
    result = crmsync("run", "-c", str(bad), check=False)
    assert result.returncode != 0
    assert "crmsync.yaml:4" in result.stderr and "nowhere" in result.stderr


STORE_PASSWORD = "store-pw-5d1e7c"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store of the secrets test: a SQLite file, or a PostgreSQL database reached with a
    password (the test server trusts local connections, so any password logs in)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crmsync.db'}"
        return
    with server_database("postgresql") as url:
        yield make_url(url).set(password=STORE_PASSWORD).render_as_string(hide_password=False)


def _stored_text(url: str, tmp_path: Path) -> bytes:
    """Everything the store holds, as bytes to search."""
    if url.startswith("sqlite"):
        return b"".join(path.read_bytes() for path in tmp_path.glob("crmsync.db*"))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return b"".join(
                repr(conn.execute(sa.select(table)).all()).encode() for table in metadata.sorted_tables
            )
    finally:
        engine.dispose()


def test_secrets_never_appear_in_logs_output_or_the_store(
    salesforce: SalesforceEmulator, tmp_path: Path, store_url: str
) -> None:
    config = write_config(tmp_path, salesforce)
    config.write_text(config.read_text().replace(f"sqlite:///{tmp_path / 'crmsync.db'}", store_url))
    written = [crmsync("db", "upgrade", "-c", str(config)).stdout]
    env = salesforce.credentials()
    secrets = [env["SALESFORCE_CLIENT_SECRET"], env["SALESFORCE_PASSWORD"]]
    secrets += list(Path(env["SALESFORCE_JWT_KEY_FILE"]).read_text().splitlines()[1:3])
    if "postgresql" in store_url:
        secrets.append(STORE_PASSWORD)
    worker_log = tmp_path / "worker.log"
    with (
        running_crmsync(config, tmp_path / "run.log") as (proc, url, log),
        started("-v", "worker", "-c", str(config), log=worker_log, ready="crmsync worker:") as worker,
    ):
        token = crmsync("token", "create", "app", "-c", str(config)).stdout.strip()
        contract = next(c["Id"] for c in salesforce.records("Contract") if c.get("Status") == "Activated")
        httpx.post(
            f"{url}/api/v1/flows/usage/records",
            json={"key": "sec-1", "fields": {"contract_id": contract, "product": "S", "quantity": 1}},
            headers={"Authorization": f"Bearer {token}"},
        )
        wait_until(lambda: any(r.get("Ad_Id__c") == "sec-1" for r in salesforce.records("Usage__c")))
        sessions = list(salesforce.org.sessions.access)  # the access tokens crmsync was issued
        assert sessions
        written += [
            log.read_text(),
            crmsync("config", "show", "-c", str(config)).stdout,
            crmsync("config", "show", "--origins", "-c", str(config)).stdout,
            crmsync("status", "-c", str(config)).stdout,
            crmsync("db", "status", "-c", str(config)).stdout,
            crmsync("dead-letters", "list", "-c", str(config)).stdout,
        ]
        for running_proc in (proc, worker):
            running_proc.send_signal(signal.SIGTERM)
            running_proc.wait(timeout=30)
        written += [log.read_text(), worker_log.read_text()]
    assert "store" in written[1] and "crmsync worker:" in written[-1]  # the startup lines are there
    store = _stored_text(store_url, tmp_path)
    for secret in [*secrets, token, *sessions]:
        assert secret, "an empty secret proves nothing"
        for text in written:
            assert secret not in text
        assert secret.encode() not in store


def test_run_says_what_it_does_and_a_port_in_use_is_one_line(
    config: Path, salesforce: SalesforceEmulator, tmp_path: Path
) -> None:
    log = tmp_path / "quiet.log"
    with started("run", "-c", str(config), "--port", "0", log=log, ready="crmsync running: http") as proc:
        url = re.search(r"crmsync running: (http://\S+)", log.read_text())
        assert url, log.read_text()
        token = crmsync("token", "create", "app", "-c", str(config)).stdout.strip()
        contract = next(c["Id"] for c in salesforce.records("Contract") if c.get("Status") == "Activated")
        httpx.post(
            f"{url.group(1)}/api/v1/flows/usage/records",
            json={"key": "said-1", "fields": {"contract_id": contract, "product": "S", "quantity": 1}},
            headers={"Authorization": f"Bearer {token}"},
        )
        wait_until(lambda: "flow usage: 1 record applied to salesforce Usage__c" in log.read_text())
        port = url.group(1).rsplit(":", 1)[1]
        taken = crmsync("run", "-c", str(config), "--port", port, check=False)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    text = log.read_text()
    assert "alembic" not in text and "setup plugin" not in text
    assert "store" in text and "upgraded from empty to revision" in text
    assert re.search(r"latency \d+\.\d\d s", text)
    assert taken.returncode != 0
    assert "Traceback" not in taken.stderr
    [line] = [x for x in taken.stderr.splitlines() if "crmsync:" in x]
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port" in line


def test_the_scheduler_runs_alone_and_stops_cleanly_on_sigterm(config: Path, tmp_path: Path) -> None:
    with started(
        "scheduler", "-c", str(config), log=tmp_path / "scheduler.log", ready="crmsync scheduler: 0 job(s)"
    ) as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "scheduler.log").read_text()


def test_status_lists_the_live_processes_of_a_scaled_out_deployment_on_postgresql(
    salesforce: SalesforceEmulator, tmp_path: Path
) -> None:
    """2 web + 2 workers + 1 scheduler on one PostgreSQL store: each is listed with its role, host,
    pid and port; a process that stops leaves the list."""
    with server_database("postgresql") as url:
        config = write_config(tmp_path, salesforce)
        config.write_text(config.read_text().replace(f"sqlite:///{tmp_path / 'crmsync.db'}", url))
        crmsync("db", "upgrade", "-c", str(config))
        args = {
            "web-1": ("serve", "-c", str(config), "--port", "0"),
            "web-2": ("serve", "-c", str(config), "--port", "0"),
            "worker-1": ("worker", "-c", str(config), "--no-scheduler"),
            "worker-2": ("worker", "-c", str(config), "--no-scheduler"),
            "scheduler": ("scheduler", "-c", str(config)),
        }
        ready = {"serve": "crmsync serving:", "worker": "crmsync worker:", "scheduler": "crmsync scheduler:"}
        with ExitStack() as stack:
            procs = {
                name: stack.enter_context(started(*a, log=tmp_path / f"{name}.log", ready=ready[a[0]]))
                for name, a in args.items()
            }

            def listed() -> list[dict[str, object]]:
                found: list[dict[str, object]] = json.loads(
                    crmsync("status", "--json", "-c", str(config)).stdout
                )["processes"]
                return found

            def pids(rows: list[dict[str, object]]) -> dict[object, object]:
                return {row["pid"]: row["role"] for row in rows}

            everyone = {p.pid: a[0] for p, a in zip(procs.values(), args.values(), strict=True)}
            wait_until(lambda: pids(listed()) == everyone, 60)
            rows = listed()
            assert all(r["last_beat"] and r["started"] and r["host"] for r in rows)
            assert all(r["leased_changes"] == 0 and r["leases"] == [] for r in rows)  # nothing to do
            assert sorted(r["port"] for r in rows if r["role"] == "serve") == sorted(  # type: ignore[type-var]
                int(re.search(r"http://[^:]+:(\d+)", (tmp_path / f"{n}.log").read_text()).group(1))  # type: ignore[union-attr]
                for n in ("web-1", "web-2")
            )
            stopped = procs["web-2"]
            stopped.send_signal(signal.SIGTERM)
            assert stopped.wait(30) == 0
            del everyone[stopped.pid]
            assert pids(listed()) == everyone
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(60)
            assert listed() == []
