from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.config import SalesforceConnection, load_config
from crmsync.config.interpolate import Sources, interpolate, read_dotenv
from crmsync.errors import ConfigError

NO_SOURCES = Sources(environ={}, dotenv={})


def test_precedence_is_environment_then_dotenv_then_default(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("A=from-dotenv\nB=from-dotenv\n")
    (tmp_path / "crmsync.yaml").write_text(
        "connections:\n"
        "  sf:\n"
        "    type: salesforce\n"
        "    auth: client_credentials\n"
        "    client_id: ${A:-from-default}\n"
        "    client_secret: ${B:-from-default}\n"
        "    login_url: ${C:-from-default}\n"
        "    username: user-${A}-${C:-x}\n"
    )
    config = load_config(tmp_path / "crmsync.yaml", environ={"A": "from-env"})
    sf = config.connections["sf"]
    assert isinstance(sf, SalesforceConnection)
    assert sf.client_id == "from-env"
    assert sf.client_secret is not None and sf.client_secret.get_secret_value() == "from-dotenv"
    assert sf.login_url == "from-default"
    assert sf.username == "user-from-env-x"
    assert config.origins == {
        "connections.sf.client_id": "env",
        "connections.sf.client_secret": ".env",
        "connections.sf.login_url": "default",
        "connections.sf.username": "env, default",
    }
    assert config.variables["connections.sf.username"] == (("A", "env"), ("C", "default"))


def test_the_process_environment_is_the_default_source_and_is_not_modified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMSYNC_TEST_URL", "sqlite:///from-env.db")
    (tmp_path / ".env").write_text("CRMSYNC_TEST_ONLY_IN_DOTENV=1\n")
    (tmp_path / "crmsync.yaml").write_text("store: {url: '${CRMSYNC_TEST_URL}'}\n")
    config = load_config(tmp_path / "crmsync.yaml")
    assert config.store.url == "sqlite:///from-env.db"
    assert "CRMSYNC_TEST_ONLY_IN_DOTENV" not in os.environ


def test_missing_variables_are_problems_naming_the_variable_and_line(tmp_path: Path) -> None:
    (tmp_path / "crmsync.yaml").write_text(
        "store:\n  url: ${STORE_URL}\nweb:\n  host: ${HOST}-${PORT}\n  port: ${PORT:-8080}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "crmsync.yaml", environ={})
    file = tmp_path / "crmsync.yaml"
    assert caught.value.problems == [
        f"{file}:2: store.url: variable STORE_URL is not set (in the environment or .env) and has no default",
        f"{file}:4: web.host: variable HOST is not set (in the environment or .env) and has no default",
        f"{file}:4: web.host: variable PORT is not set (in the environment or .env) and has no default",
    ]


def test_an_unquoted_value_that_interpolates_to_nothing_is_null(tmp_path: Path) -> None:
    connection = (
        "connections:\n  sf:\n    type: salesforce\n    client_id: c\n    username: u\n"
        "    private_key_file: k\n    instance_url: ${EMPTY}\n    ca_file: ${CA:-}\n"
    )
    (tmp_path / "k").write_text("key")
    # quoted: an empty string, which is not an integer
    (tmp_path / "crmsync.yaml").write_text("worker:\n  max_attempts: '${N:-}'\n" + connection)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "crmsync.yaml", environ={"EMPTY": ""})
    assert [p.split(": ", 1)[1] for p in caught.value.problems] == [
        "worker.max_attempts: Input should be a valid integer, unable to parse string as an integer"
    ]
    (tmp_path / "crmsync.yaml").write_text("worker:\n  max_attempts: ${N:-}\n" + connection)
    config = load_config(tmp_path / "crmsync.yaml", environ={"EMPTY": ""})
    sf = config.connections["sf"]
    assert config.worker.max_attempts is None
    assert isinstance(sf, SalesforceConnection) and sf.instance_url is None and sf.ca_file is None


def test_numbers_and_booleans_from_variables_are_converted(tmp_path: Path) -> None:
    (tmp_path / "crmsync.yaml").write_text(
        "web: {port: '${PORT}'}\nviews:\n  v:\n    connection: sf\n    query: 'SELECT Id FROM A'\n"
        "connections:\n  sf: {type: salesforce, auth: refresh_token, client_id: c, refresh_token: '${RT}'}\n"
    )
    config = load_config(tmp_path / "crmsync.yaml", environ={"PORT": "9000", "RT": "12345"})
    sf = config.connections["sf"]
    assert config.web.port == 9000
    assert isinstance(sf, SalesforceConnection)
    assert sf.refresh_token is not None and sf.refresh_token.get_secret_value() == "12345"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("$${NOT_A_VAR}", "${NOT_A_VAR}"),
        ("cost: $5", "cost: $5"),
        ("${X:-a:-b}", "a:-b"),
        ("${X:-}", ""),
        ("${SET}", "value"),
        ("${EMPTY}", ""),
        ("${EMPTY:-fallback}", "fallback"),
    ],
)
def test_interpolate_forms(text: str, expected: str) -> None:
    sources = Sources(environ={"SET": "value", "EMPTY": ""}, dotenv={})
    result = interpolate(text, sources)
    assert result.problems == []
    assert result.text == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [("${1BAD}", "malformed ${1BAD}"), ("${}", "malformed ${}"), ("a ${OPEN", "unclosed ${")],
)
def test_malformed_expressions(text: str, problem: str) -> None:
    assert interpolate(text, NO_SOURCES).problems[0].startswith(problem)


def test_env_values_are_not_interpolated_again() -> None:
    sources = Sources(environ={"A": "${B}", "B": "no"}, dotenv={})
    assert interpolate("${A}", sources).text == "${B}"


def test_read_dotenv(tmp_path: Path) -> None:
    assert read_dotenv(tmp_path / ".env") == {}
    (tmp_path / ".env").write_text("# comment\nA=1\nexport B='two words'\nC=${A}\nD\n")
    assert read_dotenv(tmp_path / ".env") == {"A": "1", "B": "two words", "C": "${A}", "D": ""}


names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
literals = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10).filter(lambda s: "$" not in s)


@given(
    name=names,
    env=st.none() | values,
    dotenv=st.none() | values,
    default=st.none() | literals.filter(lambda s: "}" not in s),
    before=literals,
    after=literals,
)
def test_interpolation_follows_the_one_precedence(
    name: str, env: str | None, dotenv: str | None, default: str | None, before: str, after: str
) -> None:
    sources = Sources(
        environ={} if env is None else {name: env},
        dotenv={} if dotenv is None else {name: dotenv},
    )
    expression = "${" + name + ("" if default is None else ":-" + default) + "}"
    result = interpolate(before + expression + after, sources)
    found = env if env is not None else dotenv
    if found is not None and (found != "" or default is None):
        assert result.problems == []
        assert result.text == before + found + after
        assert result.substitutions[0].origin == ("env" if env is not None else ".env")
    elif default is not None:
        assert result.problems == []
        assert result.text == before + default + after
        assert result.substitutions[0].origin == "default"
    else:
        assert result.problems == [
            f"variable {name} is not set (in the environment or .env) and has no default"
        ]
    assert result.whole == (before == "" and after == "")
