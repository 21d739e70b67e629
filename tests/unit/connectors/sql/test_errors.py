"""The error table, looked up with the codes and messages each database and driver report.

Every situation is also provoked for real on each database in
tests/integration/connectors/sql/test_errors.py; this checks every code of the table."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc as sa_exc

from crmsync.connectors.sql.errors import ERROR_TABLE, classify, rule_for
from crmsync.errors import Fatal, FixTheData, RetryLater, Unexpected


class PgError(Exception):
    def __init__(self, sqlstate: str, message: str = "error") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class MySqlError(Exception):
    pass


CASES = [
    (rule.situation, f"pg:{code}", rule.cls) for rule in ERROR_TABLE for code in sorted(rule.postgresql)
] + [(rule.situation, f"mysql:{code}", rule.cls) for rule in ERROR_TABLE for code in sorted(rule.mysql)]


@pytest.mark.parametrize(("situation", "code", "cls"), CASES, ids=[f"{s}-{c}" for s, c, _ in CASES])
def test_every_code_of_the_table_is_sorted(situation: str, code: str, cls: type) -> None:
    server, _, number = code.partition(":")
    # a SQLSTATE class ("08") stands for every code in it ("08006")
    error = PgError(number.ljust(5, "0")) if server == "pg" else MySqlError(int(number), "message")
    wrapped = sa_exc.OperationalError("SELECT 1", {}, error)
    sorted_ = classify(wrapped, object_name="card", record="c1")
    assert type(sorted_) is cls and sorted_.details == situation
    assert sorted_.object_name == "card" and sorted_.record == "c1" and sorted_.vendor_code


def test_mysql_messages_are_shown_without_the_tuple() -> None:
    error = classify(
        sa_exc.OperationalError("x", {}, MySqlError(1406, "Data too long for column 'name' at row 1"))
    )
    assert (
        error.message == "value too long: Data too long for column 'name' at row 1"
        and error.vendor_code == "1406"
    )


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        ("database is locked", RetryLater),
        ("attempt to write a readonly database", Fatal),
        ("UNIQUE constraint failed: crm_card.source_id", FixTheData),
        ("unable to open database file", Fatal),
        ("no such table: crm_card", Fatal),
        ('connection failed: FATAL:  database "reports" does not exist', Fatal),
        ('connection failed: FATAL:  role "bi" does not exist', Fatal),
    ],
)
def test_messages_without_a_code_are_sorted(message: str, cls: type) -> None:
    assert type(classify(sa_exc.OperationalError("x", {}, sqlite3.OperationalError(message)))) is cls


def test_what_no_rule_knows_is_sorted_by_its_class() -> None:
    assert rule_for(sa_exc.IntegrityError("x", {}, Exception("odd"))) is None
    assert type(classify(sa_exc.IntegrityError("x", {}, Exception("odd")))) is FixTheData
    assert type(classify(sa_exc.OperationalError("x", {}, Exception("odd")))) is RetryLater
    assert type(classify(sa_exc.ProgrammingError("x", {}, Exception("odd")))) is Fatal
    assert type(classify(OverflowError("Python int too large"))) is FixTheData
    assert type(classify(KeyError("bug"))) is Unexpected
