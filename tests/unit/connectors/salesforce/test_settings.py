"""The Salesforce settings model checks its own keys: what the login flow needs, the key files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from crmsync.connectors.salesforce.settings import SalesforceConnection


def refusals(data: dict[str, Any], base_dir: Path) -> set[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as refused:
        SalesforceConnection.model_validate({"type": "salesforce", **data}, context={"base_dir": base_dir})
    return {(tuple(e["loc"]), e["msg"]) for e in refused.value.errors()}


def test_the_keys_a_login_flow_needs_are_required_in_a_configuration_file(tmp_path: Path) -> None:
    assert refusals({"auth": "password", "client_id": "c", "username": " "}, tmp_path) == {
        (("client_secret",), "required by auth 'password' but not set"),
        (("username",), "required by auth 'password' but not set"),
        (("password",), "required by auth 'password' but not set"),
    }
    assert refusals({}, tmp_path) == {
        (("client_id",), "required by auth 'jwt' but not set"),
        (("username",), "required by auth 'jwt' but not set"),
        (("private_key_file",), "required by auth 'jwt' but not set"),
    }
    ok = {"auth": "client_credentials", "client_id": "c", "client_secret": "s"}
    assert SalesforceConnection.model_validate({"type": "salesforce", **ok}, context={"base_dir": tmp_path})
    # a model built in code, for its defaults, is not refused (the client checks again when it logs in)
    assert SalesforceConnection(type="salesforce").auth == "jwt"


def test_key_files_are_found_next_to_the_configuration_file(tmp_path: Path) -> None:
    jwt = {"client_id": "c", "username": "u"}
    assert refusals({**jwt, "private_key_file": "missing.pem", "ca_file": "ca.pem"}, tmp_path) == {
        (("private_key_file",), "file 'missing.pem' not found"),
        (("ca_file",), "file 'ca.pem' not found"),
    }
    (tmp_path / "k.pem").write_text("key")
    found = SalesforceConnection.model_validate(
        {"type": "salesforce", **jwt, "private_key_file": "k.pem"}, context={"base_dir": tmp_path}
    )
    assert found.private_key_file == tmp_path / "k.pem"
