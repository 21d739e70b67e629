"""The report import of a generated CSV into SQLite, beside a plain loader in the same run.

A CSV of ``ROWS`` opportunities (id, name, stage, amount, close date; 1,000,000 rows, about
70 MB) is imported by ``salesforce-report-import`` (source csv) into an empty SQLite reporting
database, in a subprocess so that its peak RSS is its own (targets: ≤60 s, ≤300 MB). The
baseline, also in a subprocess, loads the same file into the same table with the fastest plain
loader at hand: the ``csv`` module and ``executemany`` in one transaction (pandas'
``read_csv`` + ``to_sql`` would need pandas and numpy in the dev install, and is no faster on
SQLite). crmsync does more per row (types checked, each batch compared with what the table
holds, one history event per new row), which is what the ratio shows.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROWS = 1_000_000
QUICK_ROWS = 100_000
STAGES = (
    "Prospecting",
    "Qualification",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)

CRMSYNC = textwrap.dedent(
    """
    import json, resource, sys, time
    from crmsync.config import load_config
    from crmsync.scheduler.scheduler import run_job, specs_from_config
    from crmsync.store.db import Store
    config = load_config(sys.argv[1], environ={})
    store = Store(config.store.url)
    store.upgrade()
    started = time.perf_counter()
    result = run_job(store, "import", specs_from_config(config)["import"], config=config)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"status": result.status, "message": result.message, "seconds": seconds, "peak_mb": peak}
    print(json.dumps(out))
    """
)

PLAIN = textwrap.dedent(
    """
    import csv, json, resource, sqlite3, sys, time
    started = time.perf_counter()
    db = sqlite3.connect(sys.argv[2])
    db.execute(
        "CREATE TABLE crm_opportunity (source_id VARCHAR(255) PRIMARY KEY, name TEXT, stage TEXT, "
        "amount DOUBLE, close_date DATE)"
    )
    with open(sys.argv[1], newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        next(rows)
        db.executemany(
            "INSERT INTO crm_opportunity VALUES (?, ?, ?, ?, ?)",
            ((i, n, s, float(a) if a else None, d) for i, n, s, a, d in rows),
        )
    db.commit()
    seconds = time.perf_counter() - started
    count = db.execute("SELECT count(*) FROM crm_opportunity").fetchone()[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": count, "seconds": seconds, "peak_mb": peak}))
    """
)


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(1)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["Id", "Name", "StageName", "Amount", "CloseDate"])
        for n in range(rows):
            out.writerow(
                [
                    f"006{n:015d}",
                    f"Opportunity {n}",
                    rng.choice(STAGES),
                    f"{rng.randrange(1000, 500000)}.{rng.randrange(100):02d}",
                    f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                ]
            )


def _config(folder: Path) -> Path:
    path = folder / "crmsync.yaml"
    path.write_text(
        f"""\
store: {{url: "sqlite:///{folder / "crmsync.db"}"}}
connections:
  reporting: {{type: sql, url: "sqlite:///{folder / "reports.db"}"}}
jobs:
  import:
    job: salesforce-report-import
    cron: "@daily"
    args:
      source: csv
      file: opportunities.csv
      target: reporting
      id_column: Id
      columns: {{name: Name, stage: StageName, amount: Amount, close_date: CloseDate}}
      types: {{amount: number, close_date: date}}
"""
    )
    return path


def _python(code: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, timeout=1800
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool = False) -> dict[str, Any]:
    rows = QUICK_ROWS if quick else ROWS
    with tempfile.TemporaryDirectory(prefix="crmsync-bench-import-") as tmp:
        folder = Path(tmp)
        data = folder / "opportunities.csv"
        write_csv(data, rows)
        size_mb = data.stat().st_size / 1e6
        baseline = _python(PLAIN, str(data), str(folder / "plain.db"))
        crmsync = _python(CRMSYNC, str(_config(folder)))
        again = _python(CRMSYNC, str(folder / "crmsync.yaml"))
    return {
        "rows": rows,
        "csv_mb": round(size_mb, 1),
        "crmsync": {
            "status": crmsync["status"],
            "summary": crmsync["message"],
            "seconds": round(crmsync["seconds"], 1),
            "rows_per_s": round(rows / crmsync["seconds"]),
            "peak_rss_mb": round(crmsync["peak_mb"]),
        },
        "crmsync_second_run": {
            "summary": again["message"],
            "seconds": round(again["seconds"], 1),
            "peak_rss_mb": round(again["peak_mb"]),
        },
        "baseline_csv_executemany": {
            "seconds": round(baseline["seconds"], 1),
            "rows_per_s": round(rows / baseline["seconds"]),
            "peak_rss_mb": round(baseline["peak_mb"]),
        },
        "targets": {"seconds": 60, "peak_rss_mb": 300},
    }
