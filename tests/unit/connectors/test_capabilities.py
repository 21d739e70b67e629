"""Connectors declare capabilities; the engine asks for them by protocol."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from crmsync.config import load_config
from crmsync.connectors import registry
from crmsync.connectors.app import AppConnector
from crmsync.connectors.capabilities import (
    IngestSource,
    Queryable,
    Writable,
    capabilities_of,
    offers,
    require,
)
from crmsync.connectors.monday.settings import MondayConnection, MondaySettings
from crmsync.connectors.salesforce.settings import SalesforceConnection, SalesforceSettings
from crmsync.errors import ConfigError


def test_each_built_in_connector_declares_what_it_can_do() -> None:
    declared = {kind: capabilities_of(registry.connector_class(kind)) for kind in registry.kinds()}
    assert declared == {
        "salesforce": {
            "Writable",
            "Readable",
            "PolledSource",
            "Queryable",
            "RelatedCreator",
            "Budgeted",
            "Describes",
            "Reports",
            "Catalogued",
            "Exports",
        },
        "trello": {
            "Writable",
            "Readable",
            "PolledSource",
            "WebhookSource",
            "Budgeted",
            "NamedObjects",
            "Describes",
            "ActivityLog",
            "CatchUp",
        },
        "sql": {"Writable", "Readable", "ReportingTables", "PreparesSchema", "KeepsHistory"},
        "monday": {
            "Writable",
            "Readable",
            "PolledSource",
            "WebhookSource",
            "Budgeted",
            "PacedBudget",
            "ChoiceFields",
            "NamedObjects",
            "Catalogued",
        },
        "memory": {
            "Writable",
            "Readable",
            "PolledSource",
            "WebhookSource",
            "Queryable",
            "RelatedCreator",
            "Budgeted",
        },
        "app": {"IngestSource"},
    }


def test_require_names_the_connection_its_type_the_capability_and_the_need() -> None:
    app = AppConnector("shop")
    assert require(app, IngestSource) is app and offers(app, IngestSource)
    with pytest.raises(ConfigError) as refused:
        require(app, Writable, "flow 'usage' (target)")
    message = str(refused.value)
    assert "'shop'" in message and "type app" in message and "Writable" in message and "usage" in message
    assert not offers(AppConnector, Queryable)


def test_an_unknown_type_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown connection type 'nope'; valid: .*salesforce"):
        registry.connector_class("nope")


def test_settings_are_declared_once_the_client_s_view_reads_only_declared_keys() -> None:
    assert {f.name for f in fields(SalesforceSettings)} <= set(SalesforceConnection.model_fields)
    assert {f.name for f in fields(MondaySettings)} <= set(MondayConnection.model_fields)


def test_jwt_audience_can_be_set_in_the_file(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text("key")
    path = tmp_path / "crmsync.yaml"
    path.write_text(
        "connections:\n  crm:\n    type: salesforce\n    client_id: c\n    username: u\n"
        "    private_key_file: k.pem\n    jwt_audience: https://aud.example\n"
    )
    config = load_config(path)
    connector = registry.create("crm", config.connections["crm"])
    assert connector.settings.jwt_audience == "https://aud.example"  # type: ignore[attr-defined]
    connector.close()
