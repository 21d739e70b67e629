from __future__ import annotations

from pathlib import Path

import pytest

from crmsync.config import load_config
from crmsync.errors import ConfigError


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "crmsync.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return [p.removeprefix(f"{path}:") for p in caught.value.problems]


def test_jobs_section_is_validated_with_lines(tmp_path: Path) -> None:
    text = """\
jobs:
  a:
    job: purge-everything
    cron: "0 3 * * *"
  b:
    job: purge-history
    cron: "0 25 * * *"
  c:
    job: purge-history
    cron: "@daily"
    args:
      days: 0
      keep: 1
  d:
    cron: "@daily"
    when: never
  e:
    job: salesforce-report-import
    cron: "@daily"
    args:
      source: soql
      target: reporting
      id_column: Id
      columns: {stage: StageName}
  f:
    job: win-loss-mover
    cron: "@daily"
    args:
      board: trello
      crm: salesforce
      won_stages: Closed Won
"""
    valid = (
        "purge-history, salesforce-report-import, trello-refresh, update-status-nudge, webhook-healing, "
        "win-loss-mover, workload-snapshot"
    )
    assert problems(tmp_path, text) == [
        f"3: jobs.a.job: unknown job 'purge-everything'; valid: {valid}",
        "7: jobs.b.cron: invalid cron expression '0 25 * * *'",
        "12: jobs.c.args.days: Input should be greater than or equal to 1",
        "13: jobs.c.args.keep: unknown key; valid: days",
        "14: jobs.d.job: required key is missing",
        "16: jobs.d.when: unknown key; valid: job, cron, args, enabled",
        "20: jobs.e.args: Value error, source 'soql' needs connection and query",
        "31: jobs.f.args.won_stages: Input should be a valid list",
    ]


def test_a_valid_jobs_section(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.yaml"
    path.write_text('jobs:\n  purge:\n    job: purge-history\n    cron: "0 3 * * *"\n    args: {days: 7}\n')
    job = load_config(path, environ={}).jobs["purge"]
    assert (job.job, job.cron, job.args, job.enabled) == ("purge-history", "0 3 * * *", {"days": 7}, True)
