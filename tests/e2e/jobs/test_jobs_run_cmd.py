"""``crmsync jobs run NAME`` as a separate process: the report import of a CSV file into a SQLite
reporting database, its summary printed, the run listed by ``crmsync jobs list``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFIG = """\
store: {url: "sqlite:///crmsync.db"}
connections:
  reporting:
    type: sql
    url: "sqlite:///reports.db"
jobs:
  import:
    job: salesforce-report-import
    cron: "0 6 * * *"
    args:
      source: csv
      file: opportunities.csv
      target: reporting
      id_column: Id
      columns: {stage: StageName, amount: Amount}
      types: {amount: number}
"""


def crmsync(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "crmsync", *args, "--config", str(tmp_path / "crmsync.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_jobs_run_prints_the_summary_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "crmsync.yaml").write_text(CONFIG)
    rows = "".join(f"006A{n:011d},Prospecting,{n * 10}\n" for n in range(25))
    (tmp_path / "opportunities.csv").write_text("Id,StageName,Amount\n" + rows)
    first = crmsync(tmp_path, "jobs", "run", "import")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (
        "import succeeded: 25 rows read into opportunity: 25 inserted, 0 updated, 0 unchanged, 0 missing"
    )
    second = crmsync(tmp_path, "jobs", "run", "import")
    assert second.returncode == 0, second.stderr
    assert "0 inserted, 0 updated, 25 unchanged, 0 missing" in second.stdout
    listed = crmsync(tmp_path, "jobs", "list")
    assert (
        listed.returncode == 0
        and "salesforce-report-import" in listed.stdout
        and "succeeded" in listed.stdout
    )

    (tmp_path / "opportunities.csv").write_text("Id,StageName,Amount\n006A1,Prospecting,not a number\n")
    failed = crmsync(tmp_path, "jobs", "run", "import")
    assert failed.returncode == 1
    assert "import failed: FixTheData: row 1, column amount" in failed.stderr
