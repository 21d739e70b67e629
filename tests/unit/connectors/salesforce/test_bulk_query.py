"""Bulk API 2.0 query jobs and ``COUNT()`` through the client, against a scripted Salesforce."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from crmsync.errors import Fatal, FixTheData, RetryLater

BASE = "/services/data/v66.0"
JOB = "750000000000001AAA"

PAGE_1 = 'Id,Name,Owner.Name,Description\n"001A","Acme, Inc.","Ada","says ""hi"""\n"001B","Globex","",""\n'
PAGE_2 = 'Id,Name,Owner.Name,Description\n"001C","Initech","Alan","two\nlines"\n'


def csv_reply(text: str, locator: str) -> httpx.Response:
    return httpx.Response(
        200,
        text=text,
        headers={"Content-Type": "text/csv", "Sforce-Locator": locator, "Sforce-NumberOfRecords": "2"},
    )


def script_job(fake: Any, states: list[str], pages: dict[str | None, httpx.Response]) -> list[float]:
    """A query job that goes through ``states`` on successive polls; results by locator."""
    fake.route("POST", r"/jobs/query$", lambda _r: fake.reply(200, {"id": JOB, "state": "UploadComplete"}))
    polls = iter(states)
    fake.route(
        "GET",
        rf"/jobs/query/{JOB}$",
        lambda _r: fake.reply(200, {"id": JOB, "state": next(polls), "errorMessage": "bad field"}),
    )
    fake.route("GET", rf"/jobs/query/{JOB}/results$", lambda r: pages[r.url.params.get("locator")])
    return []


def test_a_query_job_is_created_polled_and_read_page_by_page(client: Any, fake: Any) -> None:
    script_job(
        fake,
        ["UploadComplete", "InProgress", "JobComplete"],
        {None: csv_reply(PAGE_1, "MjA="), "MjA=": csv_reply(PAGE_2, "null")},
    )
    slept: list[float] = []

    rows = list(client.bulk_query("SELECT Id, Name FROM Account", page_size=2, sleep=slept.append))

    assert rows == [
        {"Id": "001A", "Name": "Acme, Inc.", "Owner.Name": "Ada", "Description": 'says "hi"'},
        {"Id": "001B", "Name": "Globex", "Owner.Name": None, "Description": None},
        {"Id": "001C", "Name": "Initech", "Owner.Name": "Alan", "Description": "two\nlines"},
    ]
    create, *polls, first, second = fake.data_requests()
    assert create.url.path == f"{BASE}/jobs/query"
    assert fake.body_of(create) == {
        "operation": "query",
        "query": "SELECT Id, Name FROM Account",
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    }
    assert len(polls) == 3  # the first poll at once, then two pauses that grow
    assert slept == [0.5, 1.0]
    assert dict(first.url.params) == {"maxRecords": "2"}
    assert dict(second.url.params) == {"maxRecords": "2", "locator": "MjA="}
    assert first.headers["Accept"] == "text/csv"
    assert client.calls_made == 6


def test_query_all_reads_deleted_rows_too(client: Any, fake: Any) -> None:
    script_job(fake, ["JobComplete"], {None: csv_reply(PAGE_2, "null")})
    assert [r["Id"] for r in client.bulk_query("SELECT Id FROM Account", include_deleted=True)] == ["001C"]
    assert fake.body_of(fake.data_requests()[0])["operation"] == "queryAll"


def test_an_empty_result_has_no_rows(client: Any, fake: Any) -> None:
    script_job(fake, ["JobComplete"], {None: csv_reply("", "null")})
    assert list(client.bulk_query("SELECT Id FROM Account WHERE Name = 'nobody'")) == []


@pytest.mark.parametrize("state", ["Failed", "Aborted"])
def test_a_failed_or_aborted_job_is_fatal_with_salesforces_reason(client: Any, fake: Any, state: str) -> None:
    script_job(fake, ["InProgress", state], {})
    with pytest.raises(Fatal) as failed:
        list(client.bulk_query("SELECT Id FROM Account", sleep=lambda _s: None))
    assert failed.value.vendor_code == state
    assert "bad field" in str(failed.value) and JOB in str(failed.value)


def test_a_job_that_never_completes_is_retried_later(client: Any, fake: Any) -> None:
    script_job(fake, ["InProgress"] * 20, {})
    slept: list[float] = []
    with pytest.raises(RetryLater) as slow:
        list(client.bulk_query("SELECT Id FROM Account", max_wait=5.0, sleep=slept.append))
    assert "still InProgress" in str(slow.value)
    assert sum(slept) >= 5.0 and max(slept) <= 10.0


def test_a_refused_query_raises_the_vendor_error(client: Any, fake: Any) -> None:
    fake.route("POST", r"/jobs/query$", fake.error(400, "INVALID_FIELD", "No such column 'Nope' on Account"))
    with pytest.raises(FixTheData) as refused:
        list(client.bulk_query("SELECT Nope FROM Account"))
    assert refused.value.vendor_code == "INVALID_FIELD"


def test_an_expired_session_while_reading_results_logs_in_again(client: Any, fake: Any) -> None:
    pages = {None: csv_reply(PAGE_1, "MjA="), "MjA=": csv_reply(PAGE_2, "null")}
    script_job(fake, ["JobComplete"], pages)
    rows = client.bulk_query("SELECT Id FROM Account", page_size=2)
    assert next(rows)["Id"] == "001A"
    fake.expire_sessions()
    assert [r["Id"] for r in rows] == ["001B", "001C"]
    assert fake.logins == 2
    assert fake.data_requests()[-1].headers["Authorization"] == "Bearer tok-2"


def test_count_reads_total_size(client: Any, fake: Any) -> None:
    fake.route(
        "GET", r"/query$", lambda _r: fake.reply(200, {"totalSize": 4321, "done": True, "records": []})
    )
    assert client.count("SELECT COUNT() FROM Account") == 4321
    assert fake.data_requests()[0].url.params["q"] == "SELECT COUNT() FROM Account"
