from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from crmsync.config import AppConnection, Config, SalesforceConnection, load_config
from crmsync.config.models import WebConfig
from crmsync.connectors import registry
from crmsync.errors import ConfigError

#: every registered connection type, as a refused type's message lists them
VALID_TYPES = ", ".join(registry.kinds())

VALID = """\
version: 1
store:
  url: sqlite:///state.db
worker:
  max_attempts: 5
  backoff: {initial_seconds: 0.5}
connections:
  sf:
    type: salesforce
    auth: client_credentials
    login_url: https://login.example
    client_id: the-client
    client_secret: s3cr3t-client
    api_version: 61.0
  app:
    type: app
flows:
  usage:
    source: app
    target: sf
    object: Usage__c
    key: ad_id
    match: {field: Ad_Id__c}
    fields:
      - {source: ad_id, target: Ad_Id__c}
      - {source: contract_id, target: Contract__c}
      - {source: quantity, target: Quantity__c, transform: number}
      - {source: status, target: Status__c, transform: value_map, args: {map: {a: A}, default: B}}
      - {source: billed, target: Billed__c, owner: target, direction: to_source}
    lock:
      object: Contract
      key: contract_id
      when: "Status = 'Fulfilled'"
      message: "contract {contract_id} ({parent}) is fulfilled"
    conflict: {policy: newest_wins}
views:
  contracts:
    connection: sf
    query: "SELECT Id FROM Contract WHERE AccountId = :account_id AND Name != 'a:b' AND StartDate > :since"
    params:
      account_id: {type: id, required: true}
      since: {type: date, default: 2024-01-01}
"""


def write(tmp_path: Path, text: str, name: str = "crmsync.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    prefix = f"{path}:"
    assert all(p.startswith(prefix) for p in caught.value.problems), caught.value.problems
    count = len(caught.value.problems)
    assert caught.value.message == f"{path} is invalid ({count} problem{'s' if count > 1 else ''})"
    return [p[len(prefix) :] for p in caught.value.problems]


def test_a_valid_file_loads_into_typed_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), environ={})
    assert isinstance(config, Config)
    assert config.path == tmp_path / "crmsync.yaml"
    assert config.store.url == "sqlite:///state.db"
    assert config.web.port == 8080 and config.web.max_batch == 1000
    assert config.worker.max_attempts == 5
    assert config.worker.backoff.initial_seconds == 0.5 and config.worker.backoff.factor == 2
    sf = config.connections["sf"]
    assert isinstance(sf, SalesforceConnection)
    assert sf.auth == "client_credentials" and sf.api_version == "61.0"
    assert sf.client_secret is not None and sf.client_secret.get_secret_value() == "s3cr3t-client"
    assert "s3cr3t" not in repr(sf)
    assert isinstance(config.connections["app"], AppConnection)
    flow = config.flows["usage"]
    assert [f.source for f in flow.fields] == ["ad_id", "contract_id", "quantity", "status", "billed"]
    assert flow.fields[2].transform == "number" and flow.fields[2].owner == "source"
    assert flow.fields[4].owner == "target" and flow.fields[4].direction == "to_source"
    assert flow.match is not None and flow.match.field == "Ad_Id__c"
    assert flow.lock is not None and flow.lock.when == "Status = 'Fulfilled'"
    assert flow.on_delete == "delete" and flow.conflict.policy == "newest_wins"
    view = config.views["contracts"]
    assert view.params["account_id"].required and view.params["since"].type == "date"
    assert config.origins == {}


def test_round_trip_through_the_redacted_dump(tmp_path: Path) -> None:
    import yaml

    config = load_config(write(tmp_path, VALID), environ={})
    dumped = config.redacted()
    assert dumped["connections"]["sf"]["client_secret"] == "********"
    dumped["connections"]["sf"]["client_secret"] = "s3cr3t-client"
    again = load_config(write(tmp_path, yaml.safe_dump(dumped), "again.yaml"), environ={})
    assert again.model_dump() == config.model_dump()


def test_relative_files_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "sf.pem").write_text("key")
    text = """\
    connections:
      sf: {type: salesforce, client_id: c, username: u, private_key_file: keys/sf.pem, ca_file: ""}
    """
    config = load_config(write(tmp_path, text), environ={})
    sf = config.connections["sf"]
    assert isinstance(sf, SalesforceConnection)
    assert sf.private_key_file == tmp_path / "keys" / "sf.pem"
    assert sf.ca_file is None


def test_every_problem_is_reported_at_once_with_line_and_key(tmp_path: Path) -> None:
    text = """\
    version: 1
    web:
      port: eighty
      hots: 0.0.0.0
    connections:
      sf:
        type: salesforce
        auth: magic
        client_id: c
      board:
        type: trelo
    flows:
      usage:
        source: ap
        target: sf
        object: Usage__c
        key: ad_id
        match: {field: Ad_Id__c}
        fields:
          - {source: id, target: Id__c, transform: nubmer}
          - {target: Other__c}
        on_delete: purge
    views:
      v:
        connection: sf
        query: "SELECT Id FROM Account WHERE Id = :acct"
        params:
          account: {type: id}
    """
    found = problems(tmp_path, text)
    assert found == [
        "3: web.port: Input should be a valid integer, unable to parse string as an integer",
        f"4: web.hots: unknown key; valid: {', '.join(WebConfig.model_fields)} (did you mean 'host'?)",
        "8: connections.sf.auth: Input should be 'jwt', 'client_credentials', 'password' or 'refresh_token'",
        f"11: connections.board.type: unknown connection type 'trelo'; valid: {VALID_TYPES}",
        "14: flows.usage.source: unknown connection 'ap'; valid: board, sf",
        "17: flows.usage.key: 'ad_id' is not a mapped source field; mapped: None, id",
        "18: flows.usage.match.field: 'Ad_Id__c' is not a mapped target field; mapped: Id__c, Other__c",
        "20: flows.usage.fields.0.transform: unknown transform 'nubmer'; valid: "
        + ", ".join(__import__("crmsync.engine.transforms", fromlist=["names"]).names()),
        "21: flows.usage.fields.1.source: required key is missing",
        "22: flows.usage.on_delete: Input should be 'delete', 'archive' or 'ignore'",
        "26: views.v.query: uses :acct, which params does not declare",
        "28: views.v.params.account: declared but the query does not use :account",
    ]


def test_salesforce_auth_needs_its_keys_and_files_must_exist(tmp_path: Path) -> None:
    text = """\
    connections:
      jwt:
        type: salesforce
        client_id: c
        private_key_file: missing.pem
      pw:
        type: salesforce
        auth: password
        client_id: c
        username: u
    """
    assert problems(tmp_path, text) == [
        "2: connections.jwt.username: required by auth 'jwt' but not set",
        "5: connections.jwt.private_key_file: file 'missing.pem' not found",
        "6: connections.pw.client_secret: required by auth 'password' but not set",
        "6: connections.pw.password: required by auth 'password' but not set",
    ]


def test_flow_cross_checks(tmp_path: Path) -> None:
    text = """\
    connections:
      app: {type: app}
    flows:
      f:
        source: app
        target: nowhere
        object: X
        key: k
        fields:
          - {source: k, target: K}
          - {source: other, target: K, transform: constant}
          - {source: n, target: N, transform: number, args: {digits: 2}}
        lock: {object: P, key: parent_id, when: "A = 1", message: "locked {k} {nope}"}
      g:
        source: app
        target: app
        object: X
        key: k
        fields: []
    views:
      q: {connection: app, query: "SELECT 1"}
    """
    assert problems(tmp_path, text) == [
        "6: flows.f.target: unknown connection 'nowhere'; valid: app",
        "11: flows.f.fields.1.target: 'K' is also written by fields[0]",
        "11: flows.f.fields.1.args: transform 'constant' needs args.value",
        "12: flows.f.fields.2.args: transform 'number' takes no arg 'digits'; valid: precision, scale",
        "13: flows.f.lock.key: 'parent_id' is not a mapped source field; mapped: k, n, other",
        "13: flows.f.lock.message: {nope} is not a mapped source field; valid: k, n, other, parent",
        "16: flows.g.target: the flow's source is its target ('app'): it would read its own writes",
        "19: flows.g.fields: List should have at least 1 item after validation, not 0",
        "21: views.q.connection: connection 'app' (type app) cannot answer queries (Queryable), "
        "needed by view 'q'",
    ]


def test_a_flow_shape_the_connectors_cannot_run_is_refused_naming_the_capability(tmp_path: Path) -> None:
    text = """\
    connections:
      app: {type: app}
      crm: {type: memory, system: crm}
    flows:
      to_an_app:
        source: crm
        target: app
        object: X
        key: id
        fields:
          - {source: name, target: Name}
      both_ways_with_an_app:
        source: crm
        target: app
        object: X
        key: id
        fields:
          - {source: name, target: Name, direction: both}
    """
    assert problems(tmp_path, text) == [
        "7: flows.to_an_app.target: connection 'app' (type app) cannot be written to (Writable), "
        "needed by flow 'to_an_app'",
        "14: flows.both_ways_with_an_app.target: connection 'app' (type app) cannot be written to "
        "(Writable), needed by flow 'both_ways_with_an_app'",
        "14: flows.both_ways_with_an_app.target: connection 'app' (type app) cannot tell its changes "
        "(PolledSource or WebhookSource), needed by flow 'both_ways_with_an_app' (fields back)",
    ]


def test_a_missing_type_and_missing_required_keys(tmp_path: Path) -> None:
    text = """\
    connections:
      x: {client_id: c}
    flows:
      f: {source: x}
    """
    assert problems(tmp_path, text) == [
        f"2: connections.x.type: required key is missing; valid: {VALID_TYPES}",
        "4: flows.f.target: required key is missing",
        "4: flows.f.object: required key is missing",
        "4: flows.f.key: required key is missing",
        "4: flows.f.fields: required key is missing",
    ]


def test_unknown_top_level_section_and_duplicate_keys(tmp_path: Path) -> None:
    text = """\
    version: 2
    stores: {}
    web:
      port: 1
      port: 2
    """
    assert problems(tmp_path, text) == [
        "1: version: Input should be 1",
        "2: stores: unknown key; valid: version, store, web, worker, connections, flows, views, alerts, jobs "
        "(did you mean 'store'?)",
        "5: web.port: duplicate key (first at line 4)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web:\n  port: [1\n", "3: (file): YAML syntax: while parsing a flow sequence expected ',' or ']'"),
        ("a: b\n c: d\n", "2: (file): YAML syntax: mapping values are not allowed here"),
        ("", "1: (file): the file is empty; `crmsync init` writes a starter file"),
        ("- 1\n- 2\n", "1: (file): the file must be a mapping of sections"),
        ("web: !custom 3\n", "1: web: YAML: could not determine a constructor for the tag '!custom'"),
    ],
)
def test_yaml_level_problems_have_a_line(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith(expected), found


def test_merge_keys_and_anchors_are_understood(tmp_path: Path) -> None:
    text = """\
    connections:
      sf1: &sf {type: salesforce, auth: client_credentials, client_id: c, client_secret: s}
      sf2:
        <<: *sf
        client_id: d
    """
    config = load_config(write(tmp_path, text), environ={})
    sf2 = config.connections["sf2"]
    assert isinstance(sf2, SalesforceConnection) and sf2.client_id == "d"


def test_missing_file_suggests_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "crmsync.yaml")
    assert "no configuration file" in caught.value.message
    assert "crmsync init" in caught.value.message
    assert caught.value.problems == [caught.value.message]


def test_secret_values_never_appear_in_problems(tmp_path: Path) -> None:
    secret = "hunter2-do-not-print"
    text = """\
    connections:
      sf:
        type: salesforce
        auth: password
        client_id: ${SECRET}
        client_secret: ["${SECRET}"]
        password: ${SECRET}
        timeout_seconds: ${SECRET}
        daily_limit_guard: ${SECRET}
        api_version: ${SECRET}
        type_: ${SECRET}
    """
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"SECRET": secret})
    assert len(caught.value.problems) >= 5
    assert secret not in str(caught.value)
    assert secret not in caught.value.message
    assert secret not in "\n".join(caught.value.problems)
