"""A refused monday token says what to fix; other refusals do not."""

from __future__ import annotations

from crmsync.connectors.monday.errors import error_from_reply
from crmsync.errors import Fatal

URL = "https://api.monday.com/v2"


def test_a_refused_token_names_the_setting_and_its_variable() -> None:
    error = error_from_reply(
        401, {"errors": [{"message": "Not Authenticated"}]}, url="https://api.monday.com/v2"
    )
    assert isinstance(error, Fatal)
    assert "Not Authenticated. Check the connection's token ($MONDAY_TOKEN" in str(error)
    assert "crmsync check --connect" in str(error)
    coded = error_from_reply(
        200, {"errors": [{"message": "bad", "extensions": {"code": "UNAUTHORIZED"}}]}, url=URL
    )
    assert "$MONDAY_TOKEN" in str(coded)


def test_a_bad_query_is_not_blamed_on_the_token() -> None:
    error = error_from_reply(
        200, {"errors": [{"message": "oops", "extensions": {"code": "PARSE_ERROR"}}]}, url=URL
    )
    assert isinstance(error, Fatal) and "MONDAY_TOKEN" not in str(error)
