"""Late commits: a write keeps its stamp but reaches queries only after the delay."""

from __future__ import annotations

from starlette.testclient import TestClient

from crmsync.sandbox.salesforce import SalesforceEmulator

V = "/services/data/v66.0"


def names(client: TestClient, soql: str) -> list[str]:
    reply = client.get(f"{V}/queryAll", params={"q": soql})
    assert reply.status_code == 200, reply.text
    return [r["Name"] for r in reply.json()["records"]]


def test_a_late_create_appears_after_the_delay_with_its_write_stamp(
    emulator: SalesforceEmulator, client: TestClient
) -> None:
    emulator.late_commits(30, object_name="Account")
    rid = client.post(f"{V}/sobjects/Account", json={"Name": "Late Co"}).json()["id"]
    stamp = emulator.get("Account", rid)["SystemModstamp"]  # type: ignore[index]
    soql = "SELECT Name FROM Account WHERE Name = 'Late Co'"
    assert names(client, soql) == []
    assert client.get(f"{V}/sobjects/Account/{rid}").status_code == 200  # a read by id sees it
    emulator.advance_clock(29)
    assert names(client, soql) == []
    emulator.advance_clock(2)
    assert names(client, soql) == ["Late Co"]
    found = client.get(f"{V}/query", params={"q": f"SELECT SystemModstamp FROM Account WHERE Id = '{rid}'"})
    assert found.json()["records"][0]["SystemModstamp"] == stamp  # the stamp of the write, 31 s ago


def test_a_late_update_shows_the_committed_version_until_then(emulator: SalesforceEmulator) -> None:
    rid = emulator.insert("Account", {"Name": "Before"})
    emulator.late_commits(240, object_name="account", every=2)
    emulator.update("Account", rid, {"Name": "First"})  # the 1st matching write: on time
    emulator.update("Account", rid, {"Name": "Second"})  # the 2nd: 4 minutes late
    with TestClient(emulator.app(), base_url="https://testserver") as client:
        client.headers["Authorization"] = f"Bearer {emulator.new_session()}"
        soql = f"SELECT Name FROM Account WHERE Id = '{rid}'"
        assert names(client, soql) == ["First"]
        emulator.advance_clock(241)
        assert names(client, soql) == ["Second"]


def test_count_limits_the_late_writes_and_the_control_route(
    emulator: SalesforceEmulator, client: TestClient
) -> None:
    reply = client.post("/_sandbox/salesforce/late-commits", json={"seconds": 60, "count": 1})
    assert reply.json() == {
        "rules": [{"seconds": 60.0, "object": None, "every": 1, "count": 1, "fired": 0}],
        "pending": 0,
    }
    first = emulator.insert("Contact", {"LastName": "Late"})
    second = emulator.insert("Contact", {"LastName": "On time"})
    ids = {
        r["Id"] for r in client.get(f"{V}/query", params={"q": "SELECT Id FROM Contact"}).json()["records"]
    }
    assert second in ids and first not in ids
    assert client.get("/_sandbox/salesforce/late-commits").json()["pending"] == 1
    assert client.post("/_sandbox/salesforce/late-commits", json={"seconds": -1}).status_code == 400
    client.delete("/_sandbox/salesforce/late-commits")
    assert first in {
        r["Id"] for r in client.get(f"{V}/query", params={"q": "SELECT Id FROM Contact"}).json()["records"]
    }
