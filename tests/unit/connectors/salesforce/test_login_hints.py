"""A refused Salesforce login says which settings (and variables) to check."""

from __future__ import annotations

import json

import pytest

from crmsync.connectors.salesforce.auth import parse_token_reply
from crmsync.connectors.salesforce.settings import SalesforceSettings
from crmsync.errors import Fatal, RetryLater

URL = "https://login.example.com/services/oauth2/token"


def _refusal(settings: SalesforceSettings, status: int, body: dict[str, str]) -> Exception:
    text = json.dumps(body)
    with pytest.raises((Fatal, RetryLater)) as caught:
        parse_token_reply(settings, status, text, body, url=URL)
    return caught.value


def test_a_refused_password_login_names_username_and_password_and_their_variables() -> None:
    settings = SalesforceSettings(
        client_id="cid", client_secret="cs-1", auth="password", username="u@x", password="hunter2-pw"
    )
    error = _refusal(settings, 400, {"error": "invalid_grant", "error_description": "authentication failure"})
    assert isinstance(error, Fatal)
    text = str(error)
    assert text.startswith("login refused: invalid_grant: authentication failure. Check the connection's ")
    assert "username ($SALESFORCE_USERNAME)" in text and "password ($SALESFORCE_PASSWORD)" in text
    assert "security token" in text and "crmsync check --connect" in text
    assert "hunter2-pw" not in text and "cs-1" not in text


def test_a_refused_client_names_client_id_and_secret() -> None:
    settings = SalesforceSettings(client_id="cid", client_secret="cs-1", auth="client_credentials")
    error = _refusal(
        settings, 400, {"error": "invalid_client", "error_description": "invalid client credentials"}
    )
    assert "client_id ($SALESFORCE_CLIENT_ID), client_secret ($SALESFORCE_CLIENT_SECRET)" in str(error)


def test_a_login_service_that_is_down_is_not_blamed_on_the_settings() -> None:
    settings = SalesforceSettings(client_id="cid", client_secret="cs-1", auth="client_credentials")
    error = _refusal(settings, 503, {"error": "server_error", "error_description": "down"})
    assert isinstance(error, RetryLater) and "Check the connection" not in str(error)
