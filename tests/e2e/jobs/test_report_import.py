"""salesforce-report-import through its three sources against the Salesforce emulator: a saved
report through the Reports API (and the message when it has more than 2,000 rows), the same data
by SOQL through Bulk API 2.0, and a CSV file and URL; into SQLite, PostgreSQL and MariaDB. A
second run changes nothing; changed, new and vanished opportunities are counted."""

from __future__ import annotations

import csv
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.integration.conftest import server_database

from crmsync.config import load_config
from crmsync.jobs.sources import TooManyRows
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.salesforce.seeds import OPPORTUNITIES_REPORT_ID
from crmsync.sandbox.tls import Materials
from crmsync.scheduler.scheduler import JobSpec, run_job
from crmsync.store.db import Store

COLUMNS = {"stage": "Stage", "amount": "Amount", "close_date": "Close Date", "name": "Opportunity Name"}
SOQL_COLUMNS = {"stage": "StageName", "amount": "Amount", "close_date": "CloseDate", "name": "Name"}
TYPES = {"amount": "number", "close_date": "date"}


@pytest.fixture
def salesforce(materials: Materials) -> Iterator[SalesforceEmulator]:
    emu = SalesforceEmulator(materials=materials)
    emu.seed("demo")
    account = emu.insert("Account", {"Name": "Bulk Co"})
    for n in range(40):
        emu.insert(
            "Opportunity",
            {
                "Name": f"Deal {n}",
                "AccountId": account,
                "StageName": "Prospecting" if n % 2 else "Proposal/Price Quote",
                "Amount": 1000 + n,
                "CloseDate": f"2026-05-{n % 28 + 1:02d}",
            },
        )
    with serve(emu, materials=materials):
        yield emu


def _config(tmp_path: Path, emu: SalesforceEmulator, reporting_url: str) -> Path:
    env = emu.credentials()
    path = tmp_path / "crmsync.yaml"
    path.write_text(
        f"""\
store: {{url: "sqlite:///{tmp_path / "crmsync.db"}"}}
connections:
  salesforce:
    type: salesforce
    auth: jwt
    login_url: "{env["SALESFORCE_LOGIN_URL"]}"
    client_id: "{env["SALESFORCE_CLIENT_ID"]}"
    username: "{env["SALESFORCE_USERNAME"]}"
    private_key_file: "{env["SALESFORCE_JWT_KEY_FILE"]}"
    ca_file: "{env["SALESFORCE_CA_FILE"]}"
  reporting:
    type: sql
    url: "{reporting_url}"
"""
    )
    return path


class Run:
    def __init__(self, path: Path) -> None:
        self.config = load_config(path, environ={})
        self.store = Store(self.config.store.url)
        self.store.upgrade()

    def __call__(self, **args: Any) -> tuple[str, str]:
        spec = JobSpec(job="salesforce-report-import", cron="@daily", args={"target": "reporting", **args})
        result = run_job(self.store, "import", spec, config=self.config)
        return result.status, str(result.message)

    def rows(self) -> dict[str, tuple[Any, ...]]:
        url = self.config.connections["reporting"].url.get_secret_value()  # type: ignore[union-attr]
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            found = conn.exec_driver_sql(
                "SELECT source_id, stage, amount, close_date, deleted_at FROM crm_opportunity"
            ).all()
        engine.dispose()
        return {str(r[0])[:15]: (r[1], r[2], str(r[3])[:10], r[4]) for r in found}


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def reporting_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'reports.db'}"
        return
    with server_database(request.param) as url:
        yield url


def _expected(emu: SalesforceEmulator) -> dict[str, tuple[Any, ...]]:
    return {
        str(r["Id"])[:15]: (r["StageName"], float(r["Amount"]), r["CloseDate"], None)
        for r in emu.records("Opportunity")
    }


def test_report_then_soql_then_csv_agree_and_rerun_changes_nothing(
    salesforce: SalesforceEmulator, reporting_url: str, tmp_path: Path
) -> None:
    run = Run(_config(tmp_path, salesforce, reporting_url))
    report = {
        "source": "report",
        "connection": "salesforce",
        "report_id": OPPORTUNITIES_REPORT_ID,
        "id_column": "Opportunity ID",
        "columns": COLUMNS,
        "types": TYPES,
    }
    total = len(salesforce.records("Opportunity"))
    status, summary = run(**report)
    assert status == "succeeded", summary
    assert summary == (
        f"{total} rows read into opportunity: {total} inserted, 0 updated, 0 unchanged, 0 missing"
    )
    assert run.rows() == _expected(salesforce)
    assert run(**report)[1].endswith(f"0 inserted, 0 updated, {total} unchanged, 0 missing")

    # a change, a new opportunity and a deleted one, read by SOQL through Bulk API 2.0
    first = salesforce.records("Opportunity")[0]
    salesforce.update("Opportunity", first["Id"], {"Amount": 99})
    salesforce.insert("Opportunity", {"Name": "New", "StageName": "Prospecting", "CloseDate": "2026-07-01"})
    gone = salesforce.records("Opportunity")[1]["Id"]
    salesforce.delete("Opportunity", gone)
    soql = {
        "source": "soql",
        "connection": "salesforce",
        "query": "SELECT Id, Name, StageName, Amount, CloseDate FROM Opportunity",
        "id_column": "Id",
        "columns": SOQL_COLUMNS,
        "types": TYPES,
        "delete_missing": True,
    }
    status, summary = run(**soql)
    assert status == "succeeded", summary
    assert summary.endswith(f"1 inserted, 1 updated, {total - 2} unchanged, 1 missing"), summary
    rows = run.rows()
    assert rows[str(first["Id"])[:15]][1] == 99.0
    assert rows[str(gone)[:15]][3] is not None  # marked deleted, never removed

    # the same data as a CSV file, then from a URL: nothing left to change
    path = tmp_path / "opportunities.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["Id", "Name", "StageName", "Amount", "CloseDate"])
        for r in salesforce.records("Opportunity"):
            out.writerow([r["Id"], r["Name"], r["StageName"], r.get("Amount") or "", r["CloseDate"]])
    by_file = {**soql, "source": "csv", "file": "opportunities.csv"}
    by_file.pop("connection"), by_file.pop("query")
    status, summary = run(**by_file)
    assert status == "succeeded" and summary.endswith(
        f"0 inserted, 0 updated, {total} unchanged, 0 missing"
    ), summary
    with _serving(tmp_path) as base:
        status, summary = run(**{**by_file, "file": f"{base}/opportunities.csv"})
    assert status == "succeeded" and f"{total} unchanged" in summary, summary


def test_a_report_over_the_reports_api_cap_says_to_use_soql(
    salesforce: SalesforceEmulator, tmp_path: Path
) -> None:
    for n in range(2001):
        salesforce.insert(
            "Opportunity", {"Name": f"Bulk {n}", "StageName": "Prospecting", "CloseDate": "2026-01-01"}
        )
    run = Run(_config(tmp_path, salesforce, f"sqlite:///{tmp_path / 'reports.db'}"))
    status, message = run(
        source="report",
        connection="salesforce",
        report_id=OPPORTUNITIES_REPORT_ID,
        id_column="Opportunity ID",
        columns=COLUMNS,
        types=TYPES,
    )
    assert status == "failed"
    assert message.startswith(TooManyRows.__name__)
    assert (
        "answered 2,000" in message and "Use `source: soql`" in message and "nothing was imported" in message
    )


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _serving:
    """Serve ``folder`` over HTTP on a free port (for the CSV URL source)."""

    def __init__(self, folder: Path) -> None:
        handler = lambda *a, **k: _Quiet(*a, directory=str(folder), **k)  # noqa: E731
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
