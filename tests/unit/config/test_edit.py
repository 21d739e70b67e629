"""Edits of crmsync.yaml from the dashboard: layout and comments kept, validated as `crmsync check`
validates, credentials to the encrypted secret store, read back through ${secret:NAME}."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmsync.config import load_config
from crmsync.config.edit import ConfigEditor, FieldRow, secret_fields
from crmsync.config.secrets import KEY_FILE, SECRETS_FILE, SecretStore
from crmsync.errors import ConfigError

TEXT = """\
# the team's board  (a comment that must survive)
version: 1
store:
  url: sqlite:///crmsync.db
connections:
  app:
    type: app
  board:
    type: trello
    key: k1
    token: plain-token   # to be moved to the secret store
    board: Delivery
flows:
  cards:
    source: app
    target: board
    object: Card
    key: title
    fields:
      - {source: title, target: name}
      - {source: body, target: desc, transform: strip}   # trimmed
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "crmsync.yaml"
    path.write_text(TEXT)
    return path


def test_a_field_map_edit_keeps_the_comments_and_layout(config_file: Path) -> None:
    editor = ConfigEditor(load_config(config_file, environ={}))
    rows = editor.fields_of("cards")
    assert rows == [FieldRow("title", "name"), FieldRow("body", "desc", "strip")]
    rows.append(FieldRow("due", "due", "date"))
    config = editor.save(editor.with_fields("cards", rows))
    text = config_file.read_text()
    assert text == TEXT + "      - {source: due, target: due, transform: date}\n"
    assert [f.target for f in config.flows["cards"].fields] == ["name", "desc", "due"]


def test_a_bad_edit_is_refused_with_its_line_and_nothing_is_written(config_file: Path) -> None:
    editor = ConfigEditor(load_config(config_file, environ={}))
    rows = [FieldRow("title", "name", "no_such_transform"), FieldRow("body", "desc", "strip")]
    with pytest.raises(ConfigError) as refused:
        editor.save(editor.with_fields("cards", rows))
    assert refused.value.problems[0].startswith(
        f"{config_file}:20: flows.cards.fields.0.transform: unknown transform 'no_such_transform'"
    )
    assert config_file.read_text() == TEXT


def test_credentials_go_to_the_encrypted_store_and_the_file_names_them(config_file: Path) -> None:
    assert secret_fields("trello") == ["token", "app_secret"]
    editor = ConfigEditor(load_config(config_file, environ={}))
    text, secrets = editor.with_credentials("board", {"token": "s3cret-token-value", "app_secret": ""})
    editor.save(text, secrets)
    saved = config_file.read_text()
    assert "token: ${secret:BOARD_TOKEN} # to be moved to the secret store" in saved
    assert "s3cret" not in saved
    assert b"s3cret" not in (config_file.parent / SECRETS_FILE).read_bytes()
    assert (config_file.parent / KEY_FILE).stat().st_mode & 0o077 == 0
    config = load_config(config_file, environ={})
    assert config.connections["board"].token.get_secret_value() == "s3cret-token-value"  # type: ignore[attr-defined]


def test_a_missing_secret_or_key_is_a_problem_with_its_line(config_file: Path) -> None:
    config_file.write_text(TEXT.replace("plain-token", "${secret:NOPE}"))
    with pytest.raises(ConfigError) as missing:
        load_config(config_file, environ={})
    assert (
        "crmsync.yaml:11: connections.board.token: secret NOPE is not in the secret store"
        in (missing.value.problems[0])
    )
    SecretStore(config_file, {}).save({"NOPE": "x"})
    (config_file.parent / KEY_FILE).unlink()
    with pytest.raises(ConfigError) as no_key:
        load_config(config_file, environ={})
    assert "no key to read it" in no_key.value.problems[0]
