"""``crmsync check --connect``: every object and field a flow names is checked against the systems."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crmsync.sandbox.monday import MondayEmulator
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator

from ..conftest import ROOT, write_config

MONDAY_RECIPE = ROOT / "examples" / "monday-salesforce" / "crmsync.yaml"


def check_connect(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crmsync", "check", "--connect", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


def test_a_misspelt_salesforce_field_is_reported_with_its_line_and_the_nearest_name(
    tmp_path: Path, salesforce: SalesforceEmulator
) -> None:
    config = write_config(tmp_path, salesforce)
    config.write_text(config.read_text().replace("target: Quantity__c", "target: Quantiy__c"))
    salesforce.calls.clear()
    result = check_connect(config)
    assert result.returncode == 1, result.stdout + result.stderr
    line = line_of(config, "Quantiy__c")
    assert (
        f"{config}:{line}: flows.usage.fields.3.target: Usage__c has no field 'Quantiy__c' on connection "
        "'salesforce' (did you mean 'Quantity__c'?)"
    ) in result.stdout
    assert "Traceback" not in result.stderr
    # one describe per object, however many fields name it
    assert salesforce.calls.count("GET", "/services/data/v66.0/sobjects/Usage__c/describe") == 1


def test_a_misspelt_object_is_reported_once_with_a_suggestion(
    tmp_path: Path, salesforce: SalesforceEmulator
) -> None:
    config = write_config(tmp_path, salesforce)
    config.write_text(config.read_text().replace("object: Usage__c", "object: Usag__c"))
    result = check_connect(config)
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if "Usag__c" in line]
    assert problems == [
        f"{config}:{line_of(config, 'Usag__c')}: flows.usage.object: no object 'Usag__c' in this Salesforce "
        "org (did you mean 'Usage__c'?)"
    ]


def test_the_recipe_as_written_passes(tmp_path: Path, salesforce: SalesforceEmulator) -> None:
    result = check_connect(write_config(tmp_path, salesforce))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "objects and fields: OK" in result.stdout


def test_monday_board_columns_are_checked(tmp_path: Path, salesforce: SalesforceEmulator) -> None:
    monday = MondayEmulator()
    monday.seed("demo")
    with serve(monday):
        env = {**salesforce.credentials(), **monday.credentials()}
        config = tmp_path / "crmsync.yaml"
        text = MONDAY_RECIPE.read_text().replace("sqlite:///crmsync.db", f"sqlite:///{tmp_path / 'c.db'}")
        config.write_text(text)
        assert check_connect(config, env).returncode == 0
        config.write_text(
            text.replace(
                "{source: email, target: Email, direction: both}",
                "{source: emial, target: Email, direction: both}",
            )
        )
        result = check_connect(config, env)
        assert result.returncode == 1
        assert (
            f"{config}:{line_of(config, 'emial')}: flows.leads.fields.2.source: "
            "Leads has no field 'emial' on connection 'monday' (did you mean 'email'?)"
        ) in result.stdout
        config.write_text(text.replace("source_object: Leads", "source_object: Lead"))
        result = check_connect(config, env)
        assert result.returncode == 1
        assert "flows.leads.source_object: no board named 'Lead' on connection 'monday'" in result.stdout
        assert "boards: Deals, Leads" in result.stdout
