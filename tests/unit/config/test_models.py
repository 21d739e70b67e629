from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from crmsync.config import Config, SalesforceConnection, models, reference
from crmsync.config.checks import query_params
from crmsync.connectors import registry
from crmsync.engine import transforms
from crmsync.engine.transforms import registry as transform_registry

DOC = Path(__file__).parents[3] / "docs" / "configuration.md"


def all_models() -> list[type[BaseModel]]:
    return [model for _, model in reference.SECTIONS]


def test_every_field_has_a_description_and_unknown_keys_are_refused() -> None:
    for model in all_models():
        assert model.model_config.get("extra") == "forbid", model
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
            assert "\n" not in info.description


def _holds_secret(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, SecretStr):
        return True
    return any(_holds_secret(arg) for arg in get_args(annotation))


def test_secrets_are_secret_types() -> None:
    secret_fields = {
        (model.__name__, name)
        for model in all_models()
        for name, info in model.model_fields.items()
        if _holds_secret(info.annotation)
    }
    assert secret_fields == {
        ("SalesforceConnection", "client_secret"),
        ("SalesforceConnection", "password"),
        ("SalesforceConnection", "refresh_token"),
        ("MondayConnection", "token"),
        ("MondayConnection", "app_token"),
        ("MondayConnection", "signing_secret"),
        ("MemoryConnection", "token"),
        ("MemoryConnection", "webhook_secret"),
        ("TrelloConnection", "token"),
        ("TrelloConnection", "app_secret"),
        ("SqlConnection", "url"),
        ("AlertsConfig", "urls"),
    }


def test_the_reference_lists_every_registered_connection_type() -> None:
    headings = {heading for heading, _ in reference.SECTIONS}
    for kind in registry.kinds():
        assert f"connections.NAME (type: {kind})" in headings
    assert {"memory", "trello", "sql"} <= set(registry.kinds())


def test_defaults_when_sections_are_absent() -> None:
    config = Config()
    assert config.store.url == "sqlite:///crmsync.db"
    assert (config.web.host, config.web.port, config.web.max_body_bytes) == ("127.0.0.1", 8080, 1048576)
    w = config.worker
    assert (w.concurrency, w.lease_seconds, w.poll_interval_seconds, w.batch_size, w.max_attempts) == (
        4,
        60,
        0.2,
        200,
        10,
    )
    assert (w.backoff.initial_seconds, w.backoff.factor, w.backoff.max_seconds, w.backoff.jitter) == (
        1,
        2,
        300,
        0.2,
    )
    assert config.path is None and config.origins == {}


def test_models_are_immutable() -> None:
    config = Config()
    with pytest.raises(ValidationError):
        config.web.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [("port", 70000), ("max_batch", 0), ("max_body_bytes", -1)],
)
def test_web_bounds(field: str, value: int) -> None:
    with pytest.raises(ValidationError):
        models.WebConfig.model_validate({field: value})


def test_redacted_hides_every_secret_and_the_store_password() -> None:
    config = Config.model_validate(
        {
            "store": {"url": "postgresql+psycopg://crm:db-pass-1@db.example/crm"},
            "connections": {
                "sf": {
                    "type": "salesforce",
                    "auth": "password",
                    "client_id": "c",
                    "client_secret": "client-secret-1",
                    "username": "u",
                    "password": "user-pass-1",
                    "refresh_token": "refresh-1",
                },
                "app": {"type": "app"},
            },
        }
    )
    data = config.redacted()
    text = repr(data)
    for secret in ("db-pass-1", "client-secret-1", "user-pass-1", "refresh-1"):
        assert secret not in text
    assert data["store"]["url"] == "postgresql+psycopg://crm:********@db.example/crm"
    assert data["connections"]["sf"]["password"] == "********"
    assert data["connections"]["sf"]["client_id"] == "c"
    assert data["connections"]["app"] == {"type": "app"}
    sf = config.connections["sf"]
    assert isinstance(sf, SalesforceConnection) and isinstance(sf.password, SecretStr)


def test_api_version_written_as_a_number_is_text() -> None:
    sf = SalesforceConnection.model_validate({"type": "salesforce", "api_version": 62.0})
    assert sf.api_version == "62.0"
    with pytest.raises(ValidationError):
        SalesforceConnection.model_validate({"type": "salesforce", "api_version": "v62"})


def test_json_schema_is_valid_and_carries_descriptions() -> None:
    from jsonschema import Draft202012Validator

    schema = Config.model_json_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["web"]["description"] == "The web process (webhooks, ingest API)."
    sf = schema["$defs"]["SalesforceConnection"]
    assert sf["properties"]["client_secret"]["anyOf"][0]["writeOnly"] is True
    assert sf["properties"]["daily_limit_guard"]["description"]
    connections = schema["properties"]["connections"]["additionalProperties"]
    assert connections["discriminator"]["propertyName"] == "type"
    validator = Draft202012Validator(schema)
    good: dict[str, Any] = {"web": {"port": 1}, "connections": {"a": {"type": "app"}}}
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors({"web": {"prot": 1}}))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT Id FROM A WHERE X = :x AND Y IN :ys", ["x", "ys"]),
        ("SELECT Id FROM A WHERE T = '10:30' AND N = \"a:b\" AND Z = :z", ["z"]),
        ("SELECT Id FROM A WHERE X = :x OR Y = :x", ["x"]),
        ("SELECT Id FROM A WHERE D = 2024-01-01T10:30:00Z", []),
    ],
)
def test_query_params(query: str, expected: list[str]) -> None:
    assert query_params(query) == expected


def test_the_reference_document_lists_every_key_and_transform() -> None:
    document = DOC.read_text(encoding="utf-8")
    assert reference.stale_blocks(document) == [], (
        "docs/configuration.md is out of date: run python -m crmsync.config.reference docs/configuration.md"
    )
    for _, model in reference.SECTIONS:
        for name in model.model_fields:
            assert f"| `{name}` |" in document


def test_the_transform_table_lists_every_built_in_and_leaves_plug_ins_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transform_registry, "_REGISTRY", dict(transform_registry._REGISTRY))

    @transforms.transform("shout")
    def shout(value: Any, args: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
        """A plug-in's transform: not documented with the built-ins."""
        return value

    table = reference.transforms_markdown()
    assert "`shout`" not in table
    for name in set(transforms.names()) - {"shout"}:
        assert f"| `{name}` |" in table


def test_reference_update_replaces_only_the_generated_blocks() -> None:
    document = "intro\n<!-- generated: keys -->\nSTALE-CONTENT\n<!-- end generated: keys -->\nmiddle\n"
    document += "<!-- generated: transforms -->\n<!-- end generated: transforms -->\nend\n"
    updated = reference.update(document)
    assert updated.startswith("intro\n<!-- generated: keys -->\n### `top level`")
    assert "\nmiddle\n" in updated and updated.endswith("<!-- end generated: transforms -->\nend\n")
    assert "STALE-CONTENT" not in updated
    assert reference.stale_blocks(updated) == []
    assert reference.stale_blocks(document) == ["keys", "transforms"]
