"""The error table, one test per row: real Salesforce replies in, the right error class out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from crmsync.connectors.salesforce.errors import (
    CONCURRENT_REQUESTS,
    ERROR_TABLE,
    MULTIPLE_MATCHES,
    RATE_LIMITED,
    error_class,
    error_from_save_result,
)
from crmsync.errors import BudgetExhausted, CrmsyncError, Fatal, FixTheData, RetryLater

LEAD_ID = "00Q000000000001AAA"

# (table row, HTTP status, errorCode sent, message sent, expected class)
HTTP_CASES: list[tuple[tuple[int | None, str | None], int, str | None, str, type[CrmsyncError]]] = [
    (
        (403, "REQUEST_LIMIT_EXCEEDED"),
        403,
        "REQUEST_LIMIT_EXCEEDED",
        "TotalRequests Limit exceeded.",
        BudgetExhausted,
    ),
    (
        (403, CONCURRENT_REQUESTS),
        403,
        "REQUEST_LIMIT_EXCEEDED",
        "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        RetryLater,
    ),
    # a rate limit shares the daily limit's code: only the message tells them apart
    ((None, RATE_LIMITED), 429, "REQUEST_LIMIT_EXCEEDED", "HTTP 429", RetryLater),
    (
        (None, "UNABLE_TO_LOCK_ROW"),
        400,
        "UNABLE_TO_LOCK_ROW",
        "unable to obtain exclusive access",
        RetryLater,
    ),
    ((None, "SERVER_UNAVAILABLE"), 503, "SERVER_UNAVAILABLE", "Server temporarily unavailable", RetryLater),
    (
        (None, "QUERY_TIMEOUT"),
        400,
        "QUERY_TIMEOUT",
        "Your query request was running for too long.",
        RetryLater,
    ),
    ((None, "INVALID_QUERY_LOCATOR"), 400, "INVALID_QUERY_LOCATOR", "invalid query locator", RetryLater),
    ((429, None), 429, None, "Too Many Requests", RetryLater),
    ((500, None), 500, None, "An unexpected error occurred.", RetryLater),
    ((502, None), 502, None, "Bad Gateway", RetryLater),
    ((503, None), 503, None, "Service Unavailable", RetryLater),
    ((504, None), 504, None, "Gateway Timeout", RetryLater),
    (
        (None, "REQUIRED_FIELD_MISSING"),
        400,
        "REQUIRED_FIELD_MISSING",
        "Required fields are missing: [Company]",
        FixTheData,
    ),
    (
        (None, "INVALID_FIELD"),
        400,
        "INVALID_FIELD",
        "No such column 'Foo' on sobject of type Lead",
        FixTheData,
    ),
    (
        (None, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        400,
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "Unable to create/update fields: IsWon",
        FixTheData,
    ),
    ((None, "MALFORMED_ID"), 400, "MALFORMED_ID", "Lead ID: id value of incorrect type: 001xx", FixTheData),
    (
        (None, "DUPLICATE_VALUE"),
        400,
        "DUPLICATE_VALUE",
        "duplicate value found: Ext__c duplicates value",
        FixTheData,
    ),
    ((None, "DUPLICATES_DETECTED"), 400, "DUPLICATES_DETECTED", "Use one of these records?", FixTheData),
    (
        (None, "DUPLICATE_EXTERNAL_ID"),
        400,
        "DUPLICATE_EXTERNAL_ID",
        "Ext__c: more than one record found",
        FixTheData,
    ),
    (
        (None, "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
        400,
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "Amount must be > 0",
        FixTheData,
    ),
    (
        (None, "FIELD_INTEGRITY_EXCEPTION"),
        400,
        "FIELD_INTEGRITY_EXCEPTION",
        "field integrity exception",
        FixTheData,
    ),
    (
        (None, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        400,
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "Status: bad value for restricted picklist field: Nope",
        FixTheData,
    ),
    ((None, "STRING_TOO_LONG"), 400, "STRING_TOO_LONG", "Company: data value too large", FixTheData),
    (
        (None, "NUMBER_OUTSIDE_VALID_RANGE"),
        400,
        "NUMBER_OUTSIDE_VALID_RANGE",
        "Amount: number too large",
        FixTheData,
    ),
    (
        (None, "INVALID_TYPE_ON_FIELD_IN_RECORD"),
        400,
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "Amount: value not of required type",
        FixTheData,
    ),
    (
        (None, "INVALID_EMAIL_ADDRESS"),
        400,
        "INVALID_EMAIL_ADDRESS",
        "Email: invalid email address: x",
        FixTheData,
    ),
    (
        (None, "INVALID_CROSS_REFERENCE_KEY"),
        400,
        "INVALID_CROSS_REFERENCE_KEY",
        "invalid cross reference id",
        FixTheData,
    ),
    (
        (None, "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY"),
        400,
        "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
        "insufficient access rights on cross-reference id",
        FixTheData,
    ),
    (
        (None, "CANNOT_UPDATE_CONVERTED_LEAD"),
        400,
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "cannot reference converted lead",
        FixTheData,
    ),
    ((None, "ENTITY_IS_LOCKED"), 400, "ENTITY_IS_LOCKED", "the record is locked for approval", FixTheData),
    ((None, "JSON_PARSER_ERROR"), 400, "JSON_PARSER_ERROR", "Unexpected character", FixTheData),
    ((None, "MALFORMED_QUERY"), 400, "MALFORMED_QUERY", "unexpected token: FORM", FixTheData),
    (
        (None, "INVALID_QUERY_FILTER_OPERATOR"),
        400,
        "INVALID_QUERY_FILTER_OPERATOR",
        "invalid operator",
        FixTheData,
    ),
    ((404, "NOT_FOUND"), 404, "NOT_FOUND", "The requested resource does not exist", FixTheData),
    ((None, "ENTITY_IS_DELETED"), 404, "ENTITY_IS_DELETED", "entity is deleted", FixTheData),
    ((414, None), 414, None, "URI Too Long", FixTheData),
    ((None, "INVALID_TYPE"), 400, "INVALID_TYPE", "sObject type 'Leed' is not supported.", Fatal),
    ((None, "INSUFFICIENT_ACCESS"), 403, "INSUFFICIENT_ACCESS", "insufficient access rights", Fatal),
    (
        (None, "INSUFFICIENT_ACCESS_OR_READONLY"),
        400,
        "INSUFFICIENT_ACCESS_OR_READONLY",
        "insufficient access",
        Fatal,
    ),
    (
        (None, "API_DISABLED_FOR_ORG"),
        403,
        "API_DISABLED_FOR_ORG",
        "API is not enabled for this Organization",
        Fatal,
    ),
    ((None, "API_CURRENTLY_DISABLED"), 403, "API_CURRENTLY_DISABLED", "API is disabled for this User", Fatal),
    ((None, "FUNCTIONALITY_NOT_ENABLED"), 400, "FUNCTIONALITY_NOT_ENABLED", "not enabled", Fatal),
    ((401, None), 401, "INVALID_AUTH_HEADER", "bad header", Fatal),
    ((403, None), 403, "FORBIDDEN", "forbidden", Fatal),
    ((405, None), 405, "METHOD_NOT_ALLOWED", "HTTP Method 'PUT' not allowed", Fatal),
    ((410, None), 410, "GONE", "API version 20.0 is retired", Fatal),
    ((415, None), 415, "UNSUPPORTED_MEDIA_TYPE", "Content type not supported", Fatal),
]

# rows only SaveResults of collections calls reach (statusCode, no HTTP status)
SAVE_RESULT_CASES: list[tuple[tuple[int | None, str | None], str, str, type[CrmsyncError]]] = [
    (
        (None, "REQUEST_LIMIT_EXCEEDED"),
        "REQUEST_LIMIT_EXCEEDED",
        "TotalRequests Limit exceeded.",
        BudgetExhausted,
    ),
    ((None, "ALL_OR_NONE_OPERATION_ROLLED_BACK"), "ALL_OR_NONE_OPERATION_ROLLED_BACK", "refused", RetryLater),
    ((None, "PROCESSING_HALTED"), "PROCESSING_HALTED", "refused", RetryLater),
    ((None, "NOT_FOUND"), "NOT_FOUND", "refused", FixTheData),
]


def test_every_table_row_has_a_test() -> None:
    tested = {c[0] for c in HTTP_CASES} | {c[0] for c in SAVE_RESULT_CASES}
    tested |= {(401, "INVALID_SESSION_ID"), (300, MULTIPLE_MATCHES)}  # tested below on their own
    assert tested == set(ERROR_TABLE)


@pytest.mark.parametrize(
    ("row", "status", "code", "message", "expected"),
    HTTP_CASES,
    ids=[f"{c[1]}-{c[0][1]}" for c in HTTP_CASES],
)
def test_http_error_row(
    client: Any,
    fake: Any,
    row: tuple[int | None, str | None],
    status: int,
    code: str | None,
    message: str,
    expected: type[CrmsyncError],
) -> None:
    body = [{"message": message, "errorCode": code}] if code else None
    response = fake.reply(status, body) if body else httpx.Response(status, text=f"<html>{message}</html>")
    fake.route("GET", r"/sobjects/Lead/", response)

    with pytest.raises(CrmsyncError) as caught:
        client.get("Lead", LEAD_ID, ["Name"])

    err = caught.value
    assert type(err) is expected
    assert ERROR_TABLE[row] is expected
    assert err.status == status
    assert err.object_name == "Lead"
    assert err.record == LEAD_ID
    assert err.url is not None and f"/sobjects/Lead/{LEAD_ID}" in err.url
    assert message in err.message
    if code:
        assert err.vendor_code == (row[1] if code == "REQUEST_LIMIT_EXCEEDED" else code)
    if expected is BudgetExhausted:
        assert isinstance(err, RetryLater) and err.retry_after == 3600
    elif row == (403, CONCURRENT_REQUESTS):
        assert isinstance(err, RetryLater) and err.retry_after is not None and err.retry_after < 300
    elif isinstance(err, RetryLater):
        assert err.retry_after is None  # no hint: the engine's backoff decides


@pytest.mark.parametrize(
    ("row", "code", "message", "expected"), SAVE_RESULT_CASES, ids=[c[1] for c in SAVE_RESULT_CASES]
)
def test_save_result_row(
    row: tuple[int | None, str | None], code: str, message: str, expected: type[CrmsyncError]
) -> None:
    errors = [{"statusCode": code, "message": message, "fields": ["Name"]}]
    err = error_from_save_result(errors, url=None, object_name="Account", record="001A")
    assert type(err) is expected
    assert ERROR_TABLE[row] is expected
    assert err.vendor_code == code
    assert (err.object_name, err.record) == ("Account", "001A")
    assert "Name" in err.message


def test_expired_session_logs_in_again_once_and_retries(client: Any, fake: Any) -> None:
    fake.route("GET", r"/limits$", fake.reply(200, {"DailyApiRequests": {"Max": 15000, "Remaining": 14990}}))
    client.limits()
    fake.expire_sessions()

    assert client.limits()["DailyApiRequests"]["Max"] == 15000
    assert fake.logins == 2
    assert [r.headers["Authorization"] for r in fake.data_requests()] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_session_refused_again_after_relogin_is_fatal(client: Any, fake: Any) -> None:
    expired = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    fake.route("GET", r"/limits$", fake.reply(401, expired))

    with pytest.raises(Fatal) as caught:
        client.limits()

    assert caught.value.vendor_code == "INVALID_SESSION_ID"
    assert ERROR_TABLE[(401, "INVALID_SESSION_ID")] is Fatal
    assert fake.logins == 2  # exactly one re-login
    assert len(fake.data_requests()) == 2  # exactly one retry


def test_multiple_external_id_matches_is_fix_the_data(client: Any, fake: Any) -> None:
    matches = ["/services/data/v66.0/sobjects/Account/001A", "/services/data/v66.0/sobjects/Account/001B"]
    fake.route("PATCH", r"/sobjects/Account/Ext__c/", fake.reply(300, matches))

    with pytest.raises(FixTheData) as caught:
        client.upsert("Account", "Ext__c", "X-1", {"Name": "Acme"})

    err = caught.value
    assert ERROR_TABLE[(300, MULTIPLE_MATCHES)] is FixTheData
    assert (err.status, err.vendor_code, err.object_name, err.record) == (
        300,
        MULTIPLE_MATCHES,
        "Account",
        "Ext__c=X-1",
    )
    assert "001B" in err.message


@pytest.mark.parametrize("code", ["NOT_FOUND", "ENTITY_IS_DELETED"])
def test_deleting_a_missing_record_succeeds(client: Any, fake: Any, code: str) -> None:
    fake.route("DELETE", r"/sobjects/Lead/", fake.error(404, code, "gone"))
    assert client.delete("Lead", LEAD_ID) is False


def test_delete_of_a_present_record(client: Any, fake: Any) -> None:
    fake.route("DELETE", r"/sobjects/Lead/", fake.reply(204))
    assert client.delete("Lead", LEAD_ID) is True


def test_other_delete_errors_still_raise(client: Any, fake: Any) -> None:
    fake.route("DELETE", r"/sobjects/Lead/", fake.error(400, "MALFORMED_ID", "bad id"))
    with pytest.raises(FixTheData):
        client.delete("Lead", "nonsense")


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut")],
    ids=["connect", "timeout", "protocol"],
)
def test_network_errors_and_timeouts_retry_later(settings: Any, exc: Exception) -> None:
    from crmsync.connectors.salesforce.client import SalesforceClient

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "instance_url": "https://acme.example"})
        raise exc

    client = SalesforceClient(settings, transport=httpx.MockTransport(handler))
    with pytest.raises(RetryLater) as caught:
        client.get("Lead", LEAD_ID)
    assert type(caught.value) is RetryLater
    assert caught.value.url is not None and LEAD_ID in caught.value.url
    assert (caught.value.object_name, caught.value.record) == ("Lead", LEAD_ID)


def test_unknown_codes_fall_back_to_the_status_family() -> None:
    assert error_class(400, "SOMETHING_NEW") is FixTheData
    assert error_class(501, "SOMETHING_NEW") is RetryLater
    assert error_class(403, "SOMETHING_NEW") is Fatal
    assert error_class(None, "SOMETHING_NEW") is FixTheData


def test_a_reply_that_is_not_json_keeps_its_text(client: Any, fake: Any) -> None:
    fake.route("GET", r"/sobjects/Lead/", httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(RetryLater, match="Bad gateway"):
        client.get("Lead", LEAD_ID)


# -- limits and Retry-After ----------------------------------------------------------------------
def _limit_reply(status: int, message: str, headers: dict[str, str]) -> httpx.Response:
    body = [{"message": message, "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    return httpx.Response(status, json=body, headers={"Sforce-Limit-Info": "api-usage=10/15000", **headers})


@pytest.mark.parametrize(
    ("status", "message", "headers", "kind", "wait"),
    [
        # the daily limit, in Salesforce's own words: about an hour, whatever the status
        (403, "TotalRequests Limit exceeded.", {}, BudgetExhausted, 3600.0),
        (429, "TotalRequests Limit exceeded.", {}, BudgetExhausted, 3600.0),
        # a 429 that is not the daily limit is retried when Retry-After says, not in an hour
        (429, "HTTP 429", {"Retry-After": "120"}, RetryLater, 120.0),
        (429, "Too many requests", {"Retry-After": "3"}, RetryLater, 3.0),
        (429, "HTTP 429", {}, RetryLater, None),
        # too many long-running requests at once: seconds, or what Retry-After says
        (403, "ConcurrentPerOrgLongTxn Limit exceeded.", {}, RetryLater, 30.0),
        (
            403,
            "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            {"Retry-After": "7"},
            RetryLater,
            7.0,
        ),
        # a vendor hint beats the default even for the daily limit
        (403, "TotalRequests Limit exceeded.", {"Retry-After": "600"}, BudgetExhausted, 600.0),
    ],
)
def test_limits_are_told_apart_by_the_message_and_retry_after_is_honoured(
    client: Any,
    fake: Any,
    status: int,
    message: str,
    headers: dict[str, str],
    kind: type[RetryLater],
    wait: float | None,
) -> None:
    fake.route("GET", r"/limits$", _limit_reply(status, message, headers))
    with pytest.raises(RetryLater) as caught:
        client.limits()
    assert type(caught.value) is kind
    assert caught.value.retry_after == wait
    assert caught.value.status == status and message in caught.value.message


def test_retry_after_as_an_http_date(client: Any, fake: Any) -> None:
    import datetime as dt
    from email.utils import format_datetime

    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=90)
    fake.route(
        "GET", r"/limits$", _limit_reply(429, "HTTP 429", {"Retry-After": format_datetime(when, usegmt=True)})
    )
    with pytest.raises(RetryLater) as caught:
        client.limits()
    assert caught.value.retry_after is not None and 80 <= caught.value.retry_after <= 90


def test_retry_after_on_a_server_error_is_honoured(client: Any, fake: Any) -> None:
    fake.route(
        "GET",
        r"/limits$",
        httpx.Response(
            503, json=[{"message": "down", "errorCode": "SERVER_UNAVAILABLE"}], headers={"Retry-After": "5"}
        ),
    )
    with pytest.raises(RetryLater) as caught:
        client.limits()
    assert caught.value.retry_after == 5.0


def test_a_busy_login_service_says_when_to_come_back(client: Any, fake: Any) -> None:
    fake.token_reply = lambda _n: httpx.Response(
        429,
        json={"error": "rate_limit_exceeded", "error_description": "slow down"},
        headers={"Retry-After": "11"},
    )
    with pytest.raises(RetryLater) as caught:
        client.login()
    assert caught.value.retry_after == 11.0 and caught.value.vendor_code == "rate_limit_exceeded"
