"""``crmsync status`` shows refused logins and paused flows, with their reasons, escaped."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from crmsync.alerts import Alerter, auth_failure
from crmsync.cli.main import app
from crmsync.errors import Fatal
from crmsync.store import Store, pauses

runner = CliRunner()


def test_status_shows_refused_logins_and_paused_flows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    config = tmp_path / "crmsync.yaml"
    config.write_text(f"version: 1\nstore:\n  url: {url}\n")
    calm = runner.invoke(app, ["status", "-c", str(config)])
    assert calm.exit_code == 0, calm.output
    assert "paused flows" in calm.stdout and "login refused" not in calm.stdout

    store = Store(url)
    auth_failure(Alerter(store, []), "sf", Fatal("invalid_grant: check SALESFORCE_PASSWORD"))
    pauses.pause(store, "usage", "sf", "credentials refused\x1b[2J", "digest")
    store.dispose()
    result = runner.invoke(app, ["status", "-c", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "login refused: sf" in result.stdout and "SALESFORCE_PASSWORD" in result.stdout
    assert "usage (sf)" in result.stdout and r"credentials refused\x1b[2J" in result.stdout
    assert "\x1b[2J" not in result.stdout
    data = json.loads(runner.invoke(app, ["status", "--json", "-c", str(config)]).stdout)
    assert data["paused_flows"]["usage"]["reason"] == "credentials refused\x1b[2J"
    assert "SALESFORCE_PASSWORD" in data["login_refused"]["sf"]
