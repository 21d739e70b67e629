"""SOQL literals: escaping round-trips through an independent parser; binding never pastes raw text."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.connectors.salesforce.soql import Like, escape, format_soql

# -- an independent reader of SOQL string literals (fact sheet §3) ----------------------------------

_UNESCAPE = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def read_string(text: str, pos: int = 0, *, like: bool = False) -> tuple[str, int]:
    """Read the quoted literal starting at ``pos``: (its value, the index after its closing quote).

    ``like``: a LIKE pattern, where ``\\%`` and ``\\_`` are a literal ``%`` and ``_``.
    """
    escapes = {**_UNESCAPE, "%": "%", "_": "_"} if like else _UNESCAPE
    assert text[pos] == "'", "a string literal starts with a quote"
    out: list[str] = []
    i = pos + 1
    while True:
        ch = text[i]
        if ch == "'":
            return "".join(out), i + 1
        if ch == "\\":
            nxt = text[i + 1]
            if nxt == "u":
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            assert nxt in escapes, f"invalid escape \\{nxt}"
            out.append(escapes[nxt])
            i += 2
            continue
        assert " " <= ch != "\x7f", "raw control character inside a literal"
        assert not (like and ch in "%_"), "an unescaped wildcard inside the LIKE text"
        out.append(ch)
        i += 1


def read_in_list(text: str) -> list[str]:
    assert text.startswith("(") and text.endswith(")")
    values: list[str] = []
    pos = 1
    while True:
        value, pos = read_string(text, pos)
        values.append(value)
        if text[pos] == ")":
            assert pos == len(text) - 1
            return values
        assert text[pos : pos + 2] == ", "
        pos += 2


def unescaped_quotes(literal: str) -> int:
    """Quotes inside the literal not preceded by an escaping backslash."""
    count, i = 0, 1
    while i < len(literal) - 1:
        if literal[i] == "\\":
            i += 2
            continue
        count += literal[i] == "'"
        i += 1
    return count


@given(st.text())
def test_string_literal_round_trips(value: str) -> None:
    literal = escape(value)
    assert literal.startswith("'") and literal.endswith("'")
    assert unescaped_quotes(literal) == 0
    parsed, end = read_string(literal)
    assert parsed == value
    assert end == len(literal)  # the literal ends exactly at its closing quote


@given(st.lists(st.text(), min_size=1, max_size=20))
def test_in_list_round_trips(values: list[str]) -> None:
    assert read_in_list(escape(values)) == values


@given(st.text(), st.text())
def test_a_bound_value_cannot_leave_its_literal(value: str, other: str) -> None:
    soql = format_soql("SELECT Id FROM Lead WHERE Name = :v AND Company = :o", v=value, o=other)
    head = "SELECT Id FROM Lead WHERE Name = "
    assert soql.startswith(head)
    first, pos = read_string(soql, len(head))
    assert first == value
    assert soql[pos : pos + len(" AND Company = ")] == " AND Company = "
    second, end = read_string(soql, pos + len(" AND Company = "))
    assert second == other and end == len(soql)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("O'Brien", r"'O\'Brien'"),
        ("back\\slash", r"'back\\slash'"),
        ('say "hi"', r"""'say \"hi\"'"""),
        ("line\nbreak\r\ttab\b\f", r"'line\nbreak\r\ttab\b\f'"),
        ("nul\x00", r"'nul\u0000'"),
        ("' OR Name != '", r"'\' OR Name != \''"),
        ("50%_off", "'50%_off'"),  # wildcards are plain characters outside LIKE
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (-3, "-3"),
        (1.5, "1.5"),
        (1e20, "100000000000000000000"),
        (Decimal("12.50"), "12.50"),
        (dt.date(2024, 6, 30), "2024-06-30"),
        (dt.datetime(2024, 6, 30, 10, 30, tzinfo=dt.UTC), "2024-06-30T10:30:00Z"),
        (
            dt.datetime(2024, 6, 30, 12, 30, 1, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2024-06-30T10:30:01.250Z",
        ),
        (["a", "b'"], r"('a', 'b\'')"),
        ((1, 2), "(1, 2)"),
        ({"b", "a"}, "('a', 'b')"),
    ],
)
def test_literals(value: Any, literal: str) -> None:
    assert escape(value) == literal


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (Decimal("NaN"), ValueError),
        (dt.datetime(2024, 1, 1), ValueError),  # naive: which timezone?
        ([], ValueError),  # IN () is a syntax error
        ([[1]], TypeError),
        (object(), TypeError),
        (b"bytes", TypeError),
    ],
)
def test_values_without_a_literal_are_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        escape(value)


def test_like_escapes_wildcards_in_the_text_only() -> None:
    assert escape(Like.contains("50%_x'")) == r"'%50\%\_x\'%'"
    assert escape(Like.starts_with("Acme")) == "'Acme%'"
    assert escape(Like.ends_with("Inc.")) == "'%Inc.'"
    with pytest.raises(ValueError):
        Like("x", prefix="' OR ")


@given(st.text())
def test_like_text_round_trips(value: str) -> None:
    literal = escape(Like.contains(value))
    assert unescaped_quotes(literal) == 0
    assert literal.startswith("'%") and literal.endswith("%'")
    parsed, end = read_string("'" + literal[2:-2] + "'", like=True)
    assert parsed == value and end == len(literal) - 2


def test_format_soql_binds_every_kind_of_value() -> None:
    soql = format_soql(
        "SELECT Id FROM Contract WHERE AccountId IN :ids AND Status = :status AND StartDate >= :start"
        " AND SystemModstamp > :since AND Active__c = :active AND Note__c = :note",
        ids=["001A", "001B"],
        status="Activated",
        start=dt.date(2024, 1, 1),
        since=dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.UTC),
        active=True,
        note=None,
    )
    assert soql == (
        "SELECT Id FROM Contract WHERE AccountId IN ('001A', '001B') AND Status = 'Activated'"
        " AND StartDate >= 2024-01-01 AND SystemModstamp > 2024-01-01T08:00:00Z AND Active__c = true"
        " AND Note__c = null"
    )


def test_format_soql_leaves_the_templates_own_strings_and_literals_alone() -> None:
    head = r"SELECT Id FROM Task WHERE Subject = 'Call :who \'now\'' AND CreatedDate = LAST_N_DAYS:30"
    assert format_soql(head + " AND Id = :id", id="00T1") == head + " AND Id = '00T1'"


def test_format_soql_refuses_missing_and_unused_parameters() -> None:
    with pytest.raises(KeyError, match=":id"):
        format_soql("SELECT Id FROM Lead WHERE Id = :id")
    with pytest.raises(KeyError, match="idd"):
        format_soql("SELECT Id FROM Lead WHERE Id = :id", id="x", idd="y")
    with pytest.raises(ValueError, match="unterminated"):
        format_soql("SELECT Id FROM Lead WHERE Name = 'open :id", id="x")
