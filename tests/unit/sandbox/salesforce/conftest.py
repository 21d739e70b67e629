"""An in-process Salesforce emulator (demo seed) and a logged-in HTTP client for its app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from crmsync.sandbox.salesforce import SalesforceEmulator


@pytest.fixture
def emulator() -> SalesforceEmulator:
    em = SalesforceEmulator(page_size=200)
    em.seed("demo")
    return em


@pytest.fixture
def client(emulator: SalesforceEmulator) -> Iterator[TestClient]:
    with TestClient(emulator.app(), base_url="https://testserver") as c:
        c.headers["Authorization"] = f"Bearer {emulator.new_session()}"
        yield c
