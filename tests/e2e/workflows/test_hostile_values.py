"""Hostile values pushed all the way through: ingest → queue → worker → the Salesforce sandbox.

Every request pairs a valid entry with one whose field holds something hostile (huge numbers,
megabyte text, odd Unicode, NaN, nesting). Whatever crmsync accepts either lands or becomes a dead
letter within a bounded time; what it refuses is refused at once, naming the field; valid entries
always land; and no request takes more than a second.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync.sandbox.salesforce import SalesforceEmulator

from ..conftest import Crmsync, wait_until
from .test_worker_rules import landed, open_contract

HUGE_NUMBERS = st.sampled_from(
    [
        "1e5000",
        "1e1000000",
        "-1e308",
        "9" * 5000,
        "1" + "0" * 40,
        "0." + "0" * 5000 + "1",
        "1e-400",
        "12,34,,5",
    ]
)
ODD_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=()), min_size=0, max_size=300
) | st.sampled_from(
    [
        "x" * 300_000,
        "\u202eevil\u202c",
        "ᴀ\u0000b",
        "👩‍👩‍👧‍👦" * 200,
        "\ufeff42",
        "NaN",
        "Infinity",
        "\u0663\u0664",  # Arabic-Indic digits
        "\ud800 lone surrogate",
    ]
)
SPECIAL = st.sampled_from([math.nan, math.inf, -math.inf, 10**30, -(10**30), 2**63, True, None, [], {}])
NESTED = st.recursive(
    st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=20,
)
HOSTILE = st.one_of(HUGE_NUMBERS, ODD_TEXT, SPECIAL, NESTED, st.floats(allow_nan=True, allow_infinity=True))
FIELDS = st.sampled_from(["quantity", "product", "contract_id"])


def test_hostile_values_either_land_or_become_dead_letters_and_never_hold_back_valid_ones(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=1, max_attempts=2)
    contract = open_contract(salesforce)
    numbers = itertools.count()
    valid: set[str] = set()
    accepted_hostile: set[str] = set()
    slowest = 0.0
    headers = {"Authorization": f"Bearer {crm.token}", "Content-Type": "application/json"}
    url = f"{crm.base_url}/api/v1/flows/usage/records"

    with httpx.Client(timeout=10) as client:

        def post(records: list[dict[str, Any]]) -> httpx.Response:
            nonlocal slowest
            body = json.dumps({"records": records}, allow_nan=True)  # NaN goes out as the bare token
            started = time.monotonic()
            reply = client.post(url, content=body.encode("utf-8", "surrogatepass"), headers=headers)
            slowest = max(slowest, time.monotonic() - started)
            return reply

        @settings(
            max_examples=60,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(field=FIELDS, value=HOSTILE)
        def one_request(field: str, value: Any) -> None:
            n = next(numbers)
            good = {"key": f"ok-{n}", "fields": {"contract_id": contract, "product": "S", "quantity": 1}}
            bad_fields: dict[str, Any] = {
                "contract_id": contract,
                "product": "S",
                "quantity": 1,
                field: value,
            }
            bad = {"key": f"bad-{n}", "fields": bad_fields}
            reply = post([good, bad])
            assert reply.status_code < 500, reply.text
            if reply.status_code == 202:
                valid.add(f"ok-{n}")
                accepted_hostile.add(f"bad-{n}")
                return
            assert reply.status_code in (400, 413, 422), reply.text
            error = reply.json()["error"]
            assert error["message"]
            if reply.status_code == 422 and error["code"] in ("invalid_value", "field_not_writable"):
                assert field in reply.text, f"the refusal does not name {field!r}: {reply.text[:300]}"
            again = post([good])  # the application sends its valid entry again on its own
            assert again.status_code == 202, again.text
            valid.add(f"ok-{n}")

        one_request()

    started = time.monotonic()
    wait_until(crm.settled, timeout=120)
    drained = time.monotonic() - started
    now = landed(salesforce)
    assert valid <= set(now), f"{len(valid - set(now))} valid entries did not land"
    dead = {d.record_key for d in crm.runtime.queue.dead_letters(flow="usage", limit=1000)}
    unaccounted = accepted_hostile - set(now) - dead
    assert not unaccounted, f"accepted but neither landed nor dead letters: {sorted(unaccounted)[:5]}"
    assert dead <= accepted_hostile
    assert slowest < 1.0, f"a request took {slowest:.2f} s"
    print(
        f"{len(valid)} valid landed; {len(accepted_hostile)} hostile accepted ({len(dead)} dead letters); "
        f"slowest request {slowest * 1000:.0f} ms; drained in {drained:.1f} s"
    )
