from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from crmsync.cli import config as config_cmds
from crmsync.config.starter import VARIABLES
from crmsync.connectors.base import Connector, Write, WriteResult
from crmsync.errors import Fatal

SECRET = "s3cr3t-value-never-shown"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    config_cmds.register(app)
    return app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def sandbox_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The variables the starter file needs, as `crmsync sandbox --env-file` would give them."""
    (tmp_path / "jwt.pem").write_text("not checked without --connect")
    env = {
        "SALESFORCE_INSTANCE_URL": "https://127.0.0.1:8701",
        "SALESFORCE_CLIENT_ID": "client",
        "SALESFORCE_USERNAME": "integration@example.com",
        "SALESFORCE_JWT_KEY_FILE": str(tmp_path / "jwt.pem"),
        "SALESFORCE_CLIENT_SECRET": SECRET,
        "SALESFORCE_PASSWORD": SECRET,
    }
    assert set(VARIABLES) <= set(env)
    for key in [*env, "SALESFORCE_LOGIN_URL", "SALESFORCE_CA_FILE", "CRMSYNC_STORE_URL"]:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return env


def invoke(runner: CliRunner, app: typer.Typer, args: Sequence[str]) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_init_writes_a_file_that_check_accepts(
    runner: CliRunner, app: typer.Typer, sandbox_env: dict[str, str], tmp_path: Path
) -> None:
    result = invoke(runner, app, ["init"])
    assert result.exit_code == 0, result.output
    assert "wrote crmsync.yaml" in result.output
    text = (tmp_path / "crmsync.yaml").read_text()
    assert "# " in text and "Usage__c" in text and "${SALESFORCE_CLIENT_ID}" in text
    result = invoke(runner, app, ["check"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "crmsync.yaml is valid: 2 connections, 1 flow, 1 view"


def test_init_refuses_to_overwrite_without_force(runner: CliRunner, app: typer.Typer, tmp_path: Path) -> None:
    target = tmp_path / "mine.yaml"
    target.write_text("version: 1\n")
    result = invoke(runner, app, ["init", str(target)])
    assert result.exit_code == 1
    assert "already exists; use --force" in result.stderr
    assert target.read_text() == "version: 1\n"
    result = invoke(runner, app, ["init", str(target), "--force"])
    assert result.exit_code == 0
    assert "Usage__c" in target.read_text()


def test_init_into_a_folder(runner: CliRunner, app: typer.Typer, tmp_path: Path) -> None:
    result = invoke(runner, app, ["init", str(tmp_path)])
    assert result.exit_code == 0
    assert (tmp_path / "crmsync.yaml").is_file()


def test_check_prints_every_problem_and_exits_1(runner: CliRunner, app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "connections:\n  sf: {type: salesforce, auth: client_credentials, client_id: c, client_secret: x}\n"
        "flows:\n  f:\n    source: sff\n    target: sf\n    object: X\n    key: k\n"
        "    fields:\n      - {source: k, target: K, transform: numbr}\n"
    )
    result = invoke(runner, app, ["check", "-c", str(path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}:5: flows.f.source: unknown connection 'sff'; valid: sf"
    assert lines[1].startswith(
        f"{path}:10: flows.f.fields.0.transform: unknown transform 'numbr'; valid: boolean,"
    )
    assert lines[2] == f"{path} is invalid (2 problems)"


def test_check_without_a_file_suggests_init(runner: CliRunner, app: typer.Typer, tmp_path: Path) -> None:
    result = invoke(runner, app, ["check", "-c", str(tmp_path / "crmsync.yaml")])
    assert result.exit_code == 1
    assert "no configuration file here; create one with `crmsync init`" in result.stdout


def test_secrets_never_appear_in_show_or_in_problems(
    runner: CliRunner, app: typer.Typer, sandbox_env: dict[str, str], tmp_path: Path
) -> None:
    invoke(runner, app, ["init"])
    result = invoke(runner, app, ["config", "show", "--origins"])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    shown = yaml.safe_load(result.stdout)
    salesforce = shown["connections"]["salesforce"]
    assert salesforce["client_secret"] == "********" and salesforce["password"] == "********"
    assert salesforce["client_id"] == "client"
    assert shown["worker"]["backoff"]["max_seconds"] == 300
    assert "#   connections.salesforce.client_id: env (SALESFORCE_CLIENT_ID)" in result.stdout
    assert "#   connections.salesforce.login_url: default (SALESFORCE_LOGIN_URL)" in result.stdout

    text = (tmp_path / "crmsync.yaml").read_text()
    assert 'api_version: "66.0"' in text
    text = text.replace('api_version: "66.0"', "timeout_seconds: ${SALESFORCE_PASSWORD}")
    (tmp_path / "crmsync.yaml").write_text(text)
    for args in (["check"], ["config", "show"]):
        result = invoke(runner, app, args)
        assert result.exit_code == 1
        assert "connections.salesforce.timeout_seconds: Input should be a valid number" in result.output
        assert SECRET not in result.output


def test_show_without_origins_has_no_origin_lines(
    runner: CliRunner, app: typer.Typer, sandbox_env: dict[str, str]
) -> None:
    invoke(runner, app, ["init"])
    result = invoke(runner, app, ["config", "show"])
    assert result.exit_code == 0
    assert "# where" not in result.stdout
    assert yaml.safe_load(result.stdout)["flows"]["usage"]["fields"][3]["transform"] == "number"


def test_schema_is_json_with_descriptions(runner: CliRunner, app: typer.Typer) -> None:
    from jsonschema import Draft202012Validator

    result = invoke(runner, app, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema["title"] == "crmsync.yaml"
    assert schema["$defs"]["Flow"]["properties"]["on_delete"]["description"]


class FakeConnector(Connector):
    """A connector whose check() fails when its name says so."""

    built: list[tuple[str, Any]] = []
    closed: list[str] = []

    @classmethod
    def from_config(cls, name: str, model: Any) -> FakeConnector:
        cls.built.append((name, model))
        return cls(name)

    def check(self) -> None:
        if self.name.startswith("bad"):
            raise Fatal("invalid_grant: authentication failure", url="https://login.example/token")

    def write_batch(self, object_name: str, writes: Sequence[Write]) -> list[WriteResult]:
        raise NotImplementedError

    def close(self) -> None:
        self.closed.append(self.name)


def test_check_connect_reports_each_connection(
    runner: CliRunner, app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds: list[str] = []

    def connector_class(kind: str) -> type[Connector]:
        kinds.append(kind)
        return FakeConnector

    monkeypatch.setattr(config_cmds.registry, "connector_class", connector_class)
    FakeConnector.built.clear()
    FakeConnector.closed.clear()
    path = tmp_path / "crmsync.yaml"
    sf = "{type: salesforce, auth: client_credentials, client_id: c, client_secret: x}"
    path.write_text(f"connections:\n  good: {sf}\n  bad: {sf}\n  app: {{type: app}}\n")
    result = invoke(runner, app, ["check", "-c", str(path), "--connect"])
    assert result.exit_code == 1
    assert "  good (salesforce): OK" in result.stdout
    assert (
        "  bad (salesforce): FAILED: Fatal: invalid_grant: authentication failure at https://login.example/token"
        in result.stdout
    )
    assert "  app (app): OK (nothing to log in to)" in result.stdout
    assert kinds == ["salesforce", "salesforce"]
    assert [name for name, _ in FakeConnector.built] == ["good", "bad"]
    assert FakeConnector.built[0][1].client_id == "c"
    assert sorted(FakeConnector.closed) == ["bad", "good"]  # every one, once the names are checked

    path.write_text(f"connections:\n  good: {sf}\n")
    result = invoke(runner, app, ["check", "-c", str(path), "--connect"])
    assert result.exit_code == 0


def test_check_connect_reports_a_connector_that_cannot_be_built(
    runner: CliRunner, app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def connector_class(kind: str) -> type[Connector]:
        raise ModuleNotFoundError("No module named 'crmsync.connectors.salesforce'")

    monkeypatch.setattr(config_cmds.registry, "connector_class", connector_class)
    path = tmp_path / "crmsync.yaml"
    path.write_text(
        "connections:\n  sf: {type: salesforce, auth: client_credentials, client_id: c, client_secret: x}\n"
    )
    result = invoke(runner, app, ["check", "-c", str(path), "--connect"])
    assert result.exit_code == 1
    assert "  sf (salesforce): FAILED: connector not available" in result.stdout
