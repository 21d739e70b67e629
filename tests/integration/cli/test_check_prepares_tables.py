"""``crmsync check --connect`` prepares a reporting target's tables from the flows writing to it (on
SQLite, PostgreSQL and MariaDB): it says what it created or added, and refuses a destructive change
with the connector's message, changing nothing."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from crmsync.cli import config as config_cmds

CONFIG = """\
version: 1
store:
  url: sqlite:///{store}
connections:
  crm:
    type: memory
    system: check-prepares-{name}
  reporting:
    type: sql
    url: {url}
    table_prefix: chk_
flows:
  contacts:
    source: crm
    source_object: Contact
    target: reporting
    object: contact
    key: id
    fields:
{fields}"""


def write(tmp_path: Path, url: str, fields: list[str]) -> Path:
    path = tmp_path / "crmsync.yaml"
    lines = "".join(f"      - {{source: {f}, target: {f}}}\n" for f in fields)
    path.write_text(CONFIG.format(store=tmp_path / "c.db", name=tmp_path.name, url=url, fields=lines))
    return path


def check(path: Path) -> tuple[int, str]:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    config_cmds.register(app)
    result = CliRunner().invoke(app, ["check", "--connect", "-c", str(path)], catch_exceptions=False)
    return result.exit_code, result.output


def columns(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [c["name"] for c in sa.inspect(conn).get_columns("chk_contact")]
    finally:
        engine.dispose()


def test_check_connect_creates_adds_and_refuses_a_destructive_change(tmp_path: Path, empty_url: str) -> None:
    code, out = check(write(tmp_path, empty_url, ["name", "email"]))
    assert code == 0, out
    assert "reporting: create table chk_contact" in out and "reporting: tables: OK" in out
    assert {"source_id", "name", "email"} <= set(columns(empty_url))

    code, out = check(write(tmp_path, empty_url, ["name", "email", "phone"]))
    assert code == 0, out
    assert "reporting: add column chk_contact.phone" in out
    code, out = check(write(tmp_path, empty_url, ["name", "email", "phone"]))
    assert (code, "reporting: tables: OK (0 changes made)" in out) == (0, True), out

    code, out = check(write(tmp_path, empty_url, ["name", "phone", "city"]))  # email no longer mapped
    assert code == 1, out
    refused = [line for line in out.splitlines() if "REFUSED" in line]
    assert len(refused) == 1 and "chk_contact" in refused[0] and "email" in refused[0], out
    assert "DROP COLUMN email" in refused[0]
    assert "city" not in columns(empty_url)  # not even the additive part
