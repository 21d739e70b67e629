"""``crmsync demo --once``: the usage-billing workflow against the sandbox, verified at the end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..conftest import RECIPE


def test_demo_runs_both_workflows_through_an_outage_and_verifies_salesforce(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "crmsync", "demo", "--once",
            "--recipe", str(RECIPE), "--workdir", str(tmp_path),
            "--leads-recipe", str(RECIPE.parents[1] / "monday-salesforce" / "crmsync.yaml"),
            "--entries", "80", "--rate", "80", "--outage-seconds", "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Salesforce holds exactly the" in result.stdout
    assert "two qualified leads in Salesforce with their records" in result.stdout
    assert "Where to look" in result.stdout
