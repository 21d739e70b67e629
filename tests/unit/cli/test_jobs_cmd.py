from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from crmsync.cli import jobs as jobs_cmd
from crmsync.jobs import registry
from crmsync.jobs.base import Job, JobContext
from crmsync.scheduler import claims, runs
from crmsync.scheduler.cron import Schedule
from crmsync.store.db import Store
from crmsync.store.schema import utcnow

runner = CliRunner()

CONFIG = """\
store:
  url: sqlite:///{db}
jobs:
  purge:
    job: purge-history
    cron: "0 3 * * *"
    args: {{days: 7}}
  broken:
    job: test-fail
    cron: "*/5 * * * *"
  paused:
    job: purge-history
    cron: "@hourly"
    enabled: false
"""


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    jobs_cmd.register(app)
    return app


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    registry.names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.job("test-fail")
    class Fail(Job):
        def run(self, ctx: JobContext) -> str:
            raise RuntimeError("the target said no")

    monkeypatch.setenv("COLUMNS", "250")  # rich wraps the table to the terminal's width
    path = tmp_path / "crmsync.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "crmsync.db"))
    return path


def store_of(config: Path) -> Store:
    return Store(f"sqlite:///{config.parent / 'crmsync.db'}")


def row(output: str, name: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith(f"│ {name} "))
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_list_before_any_run(app: typer.Typer, config: Path) -> None:
    result = runner.invoke(app, ["jobs", "list", "-c", str(config)])
    assert result.exit_code == 0, result.output
    now = utcnow()
    purge = row(result.output, "purge")
    assert purge[:3] == ["purge", "purge-history", "0 3 * * *"]
    assert purge[3] == f"{Schedule('0 3 * * *').next_after(now):%Y-%m-%d %H:%M:%S}"
    assert purge[4:] == ["-", "-", ""]
    assert row(result.output, "paused")[3] == "disabled"


def test_run_records_the_run_and_list_shows_it(app: typer.Typer, config: Path) -> None:
    result = runner.invoke(app, ["jobs", "run", "purge", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output == "purge succeeded: deleted 0 done changes and 0 sync-log lines older than 7 days\n"

    result = runner.invoke(app, ["jobs", "run", "broken", "-c", str(config)])
    assert result.exit_code == 1
    assert "broken failed: RuntimeError: the target said no" in result.output

    store = store_of(config)
    try:
        assert [(r.job, r.status) for r in runs.recent(store)] == [
            ("broken", "failed"),
            ("purge", "succeeded"),
        ]
    finally:
        store.dispose()

    listed = runner.invoke(app, ["jobs", "list", "-c", str(config)]).output
    assert row(listed, "purge")[5:] == [
        "succeeded",
        "deleted 0 done changes and 0 sync-log lines older than 7 days",
    ]
    assert row(listed, "broken")[5:] == ["failed", "RuntimeError: the target said no"]


def test_list_shows_a_missed_occurrence_as_due(app: typer.Typer, config: Path) -> None:
    store = store_of(config)
    store.upgrade()
    schedule = Schedule("*/5 * * * *")
    past = utcnow().replace(year=2020)
    try:
        claims.claim_due(store, "broken", schedule, "s", past)  # a scheduler met the job in 2020...
    finally:
        store.dispose()
    listed = runner.invoke(app, ["jobs", "list", "-c", str(config)]).output  # ...and none ran since
    assert row(listed, "broken")[3] == f"{schedule.next_after(past):%Y-%m-%d %H:%M:%S} (due)"


def test_run_an_unknown_job(app: typer.Typer, config: Path) -> None:
    result = runner.invoke(app, ["jobs", "run", "nightly", "-c", str(config)])
    assert result.exit_code == 1
    assert "unknown job 'nightly'; valid: broken, paused, purge" in result.output


def test_list_without_jobs(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "crmsync.yaml"
    path.write_text(f"store:\n  url: sqlite:///{tmp_path / 'c.db'}\n")
    result = runner.invoke(app, ["jobs", "list", "-c", str(path)])
    assert result.exit_code == 0 and "no jobs in" in result.output


def test_an_invalid_configuration_is_reported(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "crmsync.yaml"
    path.write_text('jobs:\n  x:\n    job: nope\n    cron: "0 3 * * *"\n')
    result = runner.invoke(app, ["jobs", "list", "-c", str(path)])
    assert result.exit_code == 1
    assert "jobs.x.job: unknown job 'nope'; valid: purge-history" in result.output
