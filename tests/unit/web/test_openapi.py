"""The OpenAPI document: valid 3.1, every route the app serves, the models that validate requests."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from crmsync.engine.runtime import Runtime
from crmsync.store import tokens
from crmsync.web.ingest import IngestRecord

from .conftest import MakeRuntime, OpenClient
from .test_views import CONFIG


@pytest.fixture
def api(make_runtime: MakeRuntime, open_client: OpenClient) -> tuple[TestClient, Runtime]:
    runtime = make_runtime(CONFIG)
    return open_client(runtime, bearer=tokens.create_token(runtime.store, "shop")), runtime


def spec(client: TestClient) -> dict[str, Any]:
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200, r.text
    document: dict[str, Any] = r.json()
    return document


def conforms(document: dict[str, Any], model: str, body: Any) -> bool:
    schema = {"$ref": f"#/components/schemas/{model}", "components": document["components"]}
    return Draft202012Validator(schema).is_valid(body)


def test_the_document_is_valid_openapi_3_1(api: tuple[TestClient, Runtime]) -> None:
    document = spec(api[0])
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_every_route_the_app_serves_is_described(api: tuple[TestClient, Runtime]) -> None:
    client, _ = api
    document = spec(client)
    served = {
        (method.lower(), route.path)
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {
        (m, p.replace("/api/v1/views/contracts", "/api/v1/views/{name}"))
        for p, ops in document["paths"].items()
        for m in ops
    }
    assert served == described


def test_requests_are_described_by_the_models_that_validate_them(api: tuple[TestClient, Runtime]) -> None:
    document = spec(api[0])
    schemas = document["components"]["schemas"]
    assert (
        schemas["IngestRecord"]["properties"].keys() == IngestRecord.model_json_schema()["properties"].keys()
    )
    ingest = document["paths"]["/api/v1/flows/{flow}/records"]["post"]
    assert ingest["parameters"][0]["schema"]["enum"] == ["orders"]
    assert ingest["security"] == [{"bearer": []}]
    assert conforms(document, "IngestBody", {"records": [{"key": "o1", "fields": {"amount": 2}}]})
    assert conforms(document, "IngestBody", [{"key": 1, "operation": "delete"}])
    assert not conforms(document, "IngestBody", {"key": "o1", "fields": {"amount": [1]}})
    assert not conforms(document, "IngestBody", {"key": "o1", "extra": 1})
    view = document["paths"]["/api/v1/views/contracts"]["get"]
    params = {p["name"]: p for p in view["parameters"]}
    assert params["account_id"]["required"] is True and "pattern" in params["account_id"]["schema"]
    assert params["since"]["required"] is False and params["since"]["schema"]["format"] == "date"
    assert params["limit"]["schema"]["type"] == "integer"


def test_real_replies_match_the_documented_bodies(api: tuple[TestClient, Runtime]) -> None:
    client, _ = api
    document = spec(client)
    accepted = client.post("/api/v1/flows/orders/records", json={"key": "o1", "fields": {"amount": 2}})
    assert accepted.status_code == 202 and conforms(document, "Accepted", accepted.json())
    refused = client.post("/api/v1/flows/orders/records", json={"key": "o1", "fields": {"colour": 2}})
    assert refused.status_code == 422 and conforms(document, "ErrorReply", refused.json())
    assert conforms(document, "Health", client.get("/healthz").json())
    ready = client.get("/readyz")
    assert conforms(document, "Readiness", ready.json())
    assert str(ready.status_code) in document["paths"]["/readyz"]["get"]["responses"]


def test_the_document_needs_a_token(api: tuple[TestClient, Runtime]) -> None:
    client, _ = api
    r = client.get("/api/v1/openapi.json", headers={"Authorization": ""})
    assert r.status_code == 401
