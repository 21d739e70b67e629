"""The Salesforce connector against the Salesforce emulator, over HTTPS with the sandbox's own CA."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crmsync.connectors.base import Write
from crmsync.connectors.salesforce import SalesforceConnector, SalesforceSettings
from crmsync.errors import BudgetExhausted, Fatal, FixTheData, RetryLater
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import seeds
from crmsync.sandbox.salesforce.emulator import SalesforceEmulator
from crmsync.sandbox.tls import Materials

PAGE_SIZE = 50


def served(emu: SalesforceEmulator, method: str, path: str, expected: int) -> int:
    """The emulator's count of matching calls, once it reaches ``expected`` (it logs a call just
    after answering it, so a count read straight after the reply can lag by one)."""
    deadline = time.monotonic() + 5
    while emu.calls.count(method, path) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return emu.calls.count(method, path)


@pytest.fixture
def org(materials: Materials) -> Iterator[SalesforceEmulator]:
    emulator = SalesforceEmulator(materials=materials, page_size=PAGE_SIZE)
    emulator.seed("billing")
    with serve(emulator, materials=materials):
        yield emulator


def settings_for(emu: SalesforceEmulator, auth: str = "jwt", **kw: Any) -> SalesforceSettings:
    env = emu.credentials()
    values: dict[str, Any] = {
        "auth": auth,
        "login_url": env["SALESFORCE_LOGIN_URL"],
        "client_id": env["SALESFORCE_CLIENT_ID"],
        "client_secret": env["SALESFORCE_CLIENT_SECRET"],
        "username": env["SALESFORCE_USERNAME"],
        "password": env["SALESFORCE_PASSWORD"],
        "private_key_file": Path(env["SALESFORCE_JWT_KEY_FILE"]),
        "ca_file": Path(env["SALESFORCE_CA_FILE"]),
        "timeout_seconds": 5.0,
        "client_name": "crmsync-e2e",
    }
    values.update(kw)
    return SalesforceSettings(**values)


@pytest.fixture
def sf(org: SalesforceEmulator) -> Iterator[SalesforceConnector]:
    connector = SalesforceConnector("sf", settings=settings_for(org))
    yield connector
    connector.close()


def test_jwt_login_and_check(org: SalesforceEmulator, sf: SalesforceConnector) -> None:
    sf.check()
    assert sf.client.instance_url == org.base_url
    assert served(org, "POST", "/services/oauth2/token", 1) == 1
    assert served(org, "GET", "/limits", 1) == 1
    usage = sf.api_usage()
    assert usage is not None and usage.used >= 1 and usage.limit == 15000
    assert sf.over_guard() is False


@pytest.mark.parametrize("auth", ["client_credentials", "password"])
def test_secret_based_logins(org: SalesforceEmulator, auth: str) -> None:
    connector = SalesforceConnector("sf", settings=settings_for(org, auth, private_key_file=None))
    connector.check()
    connector.close()


def test_refresh_token_login(org: SalesforceEmulator) -> None:
    first = SalesforceConnector("sf", settings=settings_for(org, "password"))
    first.client.login()
    refresh = first.client.refresh_token
    assert refresh
    connector = SalesforceConnector("sf", settings=settings_for(org, "refresh_token", refresh_token=refresh))
    connector.check()
    for c in (first, connector):
        c.close()


def test_bad_credentials_are_fatal(org: SalesforceEmulator) -> None:
    connector = SalesforceConnector(
        "sf", settings=settings_for(org, "client_credentials", client_secret="wrong-secret")
    )
    with pytest.raises(Fatal) as caught:
        connector.check()
    assert caught.value.vendor_code == "invalid_client"
    assert "wrong-secret" not in str(caught.value)
    connector.close()


def test_a_thousand_upserts_take_five_collection_calls(
    org: SalesforceEmulator, sf: SalesforceConnector
) -> None:
    writes = [
        Write(f"k{i}", "upsert", {"Quantity__c": i}, external_id_field="Ad_Id__c", external_id=f"AD-{i:04d}")
        for i in range(1000)
    ]
    before = len(org.records("Usage__c"))
    results = sf.write_batch("Usage__c", writes)

    assert served(org, "PATCH", "/composite/sobjects/Usage__c/Ad_Id__c", 5) == 5
    assert all(r.ok and r.created for r in results), [r.error for r in results if not r.ok][:3]
    assert len(org.records("Usage__c")) == before + 1000
    by_key = {r["Ad_Id__c"]: r["Id"] for r in org.records("Usage__c")}
    assert [r.target_id for r in results] == [by_key[f"AD-{i:04d}"] for i in range(1000)]
    # the engine's own writes are marked with its client name (echo suppression)
    assert org.changes("Usage__c", client="crmsync-e2e")

    again = sf.write_batch("Usage__c", writes[:10])
    assert all(r.ok and r.created is False for r in again)


def test_relogin_after_sessions_expire(org: SalesforceEmulator, sf: SalesforceConnector) -> None:
    sf.check()
    org.expire_sessions()
    rows = sf.query_view("SELECT Id FROM Account WHERE Name = :name", {"name": "Acme Corp"})
    assert len(rows) == 1
    assert sf.client.logins == 2


def test_mixed_batch_sorted_by_real_replies(org: SalesforceEmulator, sf: SalesforceConnector) -> None:
    acme = seeds.BILLING_ACCOUNTS["Acme Corp"]
    doomed = org.insert("Account", {"Name": "Doomed"})
    results = sf.write_batch(
        "Contract",
        [
            Write("ok", "create", {"AccountId": acme, "Name": "NEW-1", "Status": "Draft"}),
            Write("missing", "create", {"Name": "NO-ACCOUNT"}),
            Write("bad-pick", "create", {"AccountId": acme, "Status": "Not A Status"}),
        ],
    )
    assert [r.ok for r in results] == [True, False, False]
    assert results[1].error is not None and results[1].error.vendor_code == "REQUIRED_FIELD_MISSING"
    assert isinstance(results[1].error, FixTheData) and "AccountId" in results[1].error.message
    assert isinstance(results[2].error, FixTheData)

    deleted = sf.write_batch("Account", [Write("d1", "delete", target_id=doomed)])
    again = sf.write_batch("Account", [Write("d2", "delete", target_id=doomed)])
    assert deleted[0].ok and again[0].ok  # deleting is idempotent


def test_errors_of_the_real_api_are_sorted(org: SalesforceEmulator, sf: SalesforceConnector) -> None:
    client = sf.client
    missing_id = seeds.BILLING_ACCOUNTS["Acme Corp"][:-4] + "ZZZZ"
    with pytest.raises(FixTheData) as not_found:
        client.get("Account", missing_id)
    assert not_found.value.status in (400, 404)
    with pytest.raises(FixTheData) as malformed:
        client.query("SELECT Id FORM Account")
    assert malformed.value.vendor_code == "MALFORMED_QUERY"
    with pytest.raises(Fatal) as bad_object:
        client.query("SELECT Id FROM Nope__c")
    assert bad_object.value.vendor_code == "INVALID_TYPE"
    with pytest.raises(FixTheData) as bad_field:
        client.update("Account", seeds.BILLING_ACCOUNTS["Acme Corp"], {"Nope__c": 1})
    assert bad_field.value.vendor_code == "INVALID_FIELD"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("unavailable", RetryLater),
        ("server_error", RetryLater),
        ("lock", RetryLater),
        ("rate_limit", RetryLater),
        ("limit_exceeded", BudgetExhausted),
    ],
)
def test_injected_faults_are_sorted(
    org: SalesforceEmulator, sf: SalesforceConnector, fault: str, expected: type[Exception]
) -> None:
    sf.check()
    org.faults.add(path="/composite/sobjects", error=fault, count=1)
    with pytest.raises(expected) as caught:
        sf.write_batch("Account", [Write("a", "create", {"Name": "X"})])
    assert type(caught.value) is expected
    assert sf.write_batch("Account", [Write("a", "create", {"Name": "X"})])[0].ok


def test_an_expired_session_fault_logs_in_again(org: SalesforceEmulator, sf: SalesforceConnector) -> None:
    sf.check()
    org.faults.add(path="/limits", error="session_expired", count=1)
    sf.check()
    assert sf.client.logins == 3  # check() logs in itself, plus the one re-login


def test_a_hung_request_times_out(org: SalesforceEmulator) -> None:
    connector = SalesforceConnector("sf", settings=settings_for(org, timeout_seconds=0.3))
    connector.check()
    org.faults.add(path="/limits", hang=True, hang_seconds=0.8, count=1)
    with pytest.raises(RetryLater, match="did not answer"):
        connector.client.limits()
    connector.close()


def test_query_follows_pages(org: SalesforceEmulator, sf: SalesforceConnector) -> None:
    for i in range(120):
        org.insert("Account", {"Name": f"Paged {i:03d}"})
    rows = sf.client.query("SELECT Id, Name FROM Account WHERE Name LIKE 'Paged%' ORDER BY Name")
    assert [r["Name"] for r in rows] == [f"Paged {i:03d}" for i in range(120)]
    assert served(org, "GET", "/query", 3) == 3


@pytest.mark.parametrize("value", ["with space", "a+b", "x#1?y=2&z", "50%", "Zürich", "2024/05/A", "O'Brien"])
def test_upsert_by_awkward_external_ids(org: SalesforceEmulator, sf: SalesforceConnector, value: str) -> None:
    record_id, created = sf.client.upsert("Usage__c", "Ad_Id__c", value, {"Quantity__c": 1})
    assert created is True
    assert sf.client.upsert("Usage__c", "Ad_Id__c", value, {"Quantity__c": 2}) == (record_id, False)
    rows = sf.query_view("SELECT Id, Quantity__c FROM Usage__c WHERE Ad_Id__c = :v", {"v": value})
    assert rows == [{"Id": record_id, "Quantity__c": 2}]


def test_read_records_and_changes(org: SalesforceEmulator, sf: SalesforceConnector) -> None:
    first = sf.read_changes("Account", None)
    names = {r.fields["Name"] for r in first.records}
    assert {"Acme Corp", "Globex"} <= names
    assert first.watermark is not None

    org.advance_clock(5)
    acme = seeds.BILLING_ACCOUNTS["Acme Corp"]
    globex = seeds.BILLING_ACCOUNTS["Globex"]
    org.update("Account", acme, {"Name": "Acme Corporation"})
    org.delete("Account", globex)
    later = sf.read_changes("Account", first.watermark)

    assert {(r.id, r.fields["Name"], r.deleted) for r in later.records} == {
        (acme, "Acme Corporation", False),
        (globex, "Globex", True),
    }
    assert later.watermark is not None and later.watermark > first.watermark
    # polling again re-reads at most the overlap (records stamped just before the watermark)
    again = sf.read_changes("Account", later.watermark)
    assert {r.id for r in again.records} <= {acme, globex}
    assert again.watermark == later.watermark

    records = list(sf.read_records("Account", [acme, globex[:-3] + "AAA"]))
    assert [(r.id, r.fields["Name"]) for r in records] == [(acme, "Acme Corporation")]


def test_lock_rule_check(org: SalesforceEmulator, sf: SalesforceConnector) -> None:
    fulfilled = seeds.BILLING_CONTRACTS["ACME-2025"]
    active = seeds.BILLING_CONTRACTS["ACME-2026"]
    assert sf.record_matches("Contract", fulfilled, "Status = 'Fulfilled'") is True
    assert sf.record_matches("Contract", active, "Status = 'Fulfilled'") is False
    assert sf.record_matches("Contract", fulfilled[:15], "Status = 'Fulfilled'") is True


def test_updated_and_deleted_resources(org: SalesforceEmulator, sf: SalesforceConnector) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    kept = org.insert("Account", {"Name": "Kept"})
    doomed = org.insert("Account", {"Name": "Short-lived"})
    assert sf.client.delete("Account", doomed) is True
    assert sf.client.delete("Account", doomed) is False
    org.advance_clock(120)  # both resources cover whole minutes up to the last one that ended
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)
    assert kept in sf.client.updated("Account", start, end)["ids"]
    assert doomed in [d["id"] for d in sf.client.deleted("Account", start, end)["deletedRecords"]]


@pytest.mark.parametrize(
    ("rule", "expected", "wait"),
    [
        # a 429 saying REQUEST_LIMIT_EXCEEDED is not the daily limit: back when Retry-After says
        ({"status": 429, "retry_after": 2}, RetryLater, 2.0),
        ({"error": "rate_limit", "retry_after": 4}, RetryLater, 4.0),
        ({"error": "limit_exceeded"}, BudgetExhausted, 3600.0),
        ({"error": "unavailable", "retry_after": 1}, RetryLater, 1.0),
    ],
)
def test_injected_limits_carry_the_wait_the_reply_asks_for(
    org: SalesforceEmulator,
    sf: SalesforceConnector,
    rule: dict[str, Any],
    expected: type[Exception],
    wait: float,
) -> None:
    sf.check()
    org.faults.add(path="/composite/sobjects", count=1, **rule)
    with pytest.raises(RetryLater) as caught:
        sf.write_batch("Account", [Write("a", "create", {"Name": "X"})])
    assert type(caught.value) is expected and caught.value.retry_after == wait
