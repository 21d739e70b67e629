"""What the web tests share: the configurations they start from, a Runtime opened on a crmsync.yaml
written to the test's folder, and its app behind a starlette TestClient, with or without an API
token. Both are closed after the test, the client first."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

import pytest
from starlette.testclient import TestClient

from crmsync.config import load_config
from crmsync.engine.runtime import Runtime
from crmsync.store import Store
from crmsync.web.app import create_app


class MakeRuntime(Protocol):
    """The ``make_runtime`` fixture."""

    def __call__(
        self, yaml: str, *, store: str | None = None, upgrade: bool | None = None, **values: object
    ) -> Runtime: ...


class OpenClient(Protocol):
    """The ``open_client`` fixture."""

    def __call__(self, runtime: Runtime, *, bearer: str | None = None) -> TestClient: ...


def salesforce_connection(name: str = "salesforce") -> str:
    """A Salesforce connection named ``name`` (a YAML entry under ``connections:``) that is never
    reached: nothing listens on port 9."""
    return f"""\
  {name}:
    type: salesforce
    auth: client_credentials
    login_url: https://127.0.0.1:9
    instance_url: https://127.0.0.1:9
    client_id: abc
    client_secret: topsecret-value
"""


def orders_config(
    *, web: str = "", connections: str = "", flow: str = "", fields: str = "", more: str = ""
) -> str:
    """The configuration most web tests start from: the app connection ``shop`` feeding the flow
    ``orders`` (Order__c, by order_id) to ``salesforce``, on the store ``%(store)s``.

    Each argument adds whole YAML lines where its name says: ``web`` the web section, ``connections``
    more connections after salesforce, ``flow`` settings of orders, ``fields`` mapped fields after
    order_id, ``more`` sections at the end (more flows, views, jobs)."""
    return f"""\
version: 1
store: {{url: "%(store)s"}}
{web}connections:
{salesforce_connection()}{connections}  shop:
    type: app
flows:
  orders:
    source: shop
    target: salesforce
    object: Order__c
    key: order_id
{flow}    fields:
      - {{source: order_id, target: Order_Id__c}}
{fields}{more}"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated store in a fresh SQLite file, for the tests of what the app is built from."""
    created = Store(f"sqlite:///{tmp_path / 'c.db'}")
    created.upgrade()
    yield created
    created.dispose()


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[MakeRuntime]:
    """``make_runtime(yaml, store=None, upgrade=None, **values)``: writes ``yaml`` as the test's
    crmsync.yaml, its ``%(store)s`` the store's URL (a fresh SQLite file unless ``store`` names
    another) and its other ``%(name)s`` the ``values``, and opens a Runtime on it (``upgrade`` as
    Runtime takes it: by default a SQLite store is migrated first). Every runtime it opened is
    closed after the test."""
    opened: list[Runtime] = []

    def make(
        yaml: str, *, store: str | None = None, upgrade: bool | None = None, **values: object
    ) -> Runtime:
        path = tmp_path / "crmsync.yaml"
        path.write_text(yaml % {"store": store or f"sqlite:///{tmp_path / 'c.db'}", **values})
        runtime = Runtime(load_config(path), upgrade=upgrade)
        opened.append(runtime)
        return runtime

    yield make
    for runtime in opened:
        runtime.close()


@pytest.fixture
def open_client(make_runtime: MakeRuntime) -> Iterator[OpenClient]:
    """``open_client(runtime, bearer=None)``: the runtime's app behind a started TestClient that
    answers a server error as the 500 a real client would see, and sends ``bearer`` (an API token)
    with every request when given. Closed after the test, before the runtimes of ``make_runtime``."""
    with ExitStack() as opened:

        def open_(runtime: Runtime, *, bearer: str | None = None) -> TestClient:
            client = opened.enter_context(TestClient(create_app(runtime), raise_server_exceptions=False))
            if bearer is not None:
                client.headers["Authorization"] = f"Bearer {bearer}"
            return client

        yield open_
