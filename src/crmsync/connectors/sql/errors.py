"""Database errors sorted into crmsync's error tree, by one table of situations.

Each :class:`Rule` names a situation, the class it gets (what the worker does next), and how each
database reports it: PostgreSQL by SQLSTATE (exact, or its two-character class), MySQL/MariaDB
by error number, and any of them by a fragment of the message (SQLite has no codes; drivers
report some connection failures without one). The first rule that matches wins; an error no rule
knows is sorted by its DBAPI class (:func:`classify`).

=======================  ==========  =======================  =====================  ========================
situation                class       PostgreSQL (SQLSTATE)    MySQL/MariaDB          SQLite (message)
=======================  ==========  =======================  =====================  ========================
value too long           FixTheData  22001                    1406                   (crmsync checks first)
number out of range      FixTheData  22003                    1264                   "too large"
value of the wrong type  FixTheData  22P02 22007 22008        1366 1292 1367         "datatype mismatch"
constraint violated      FixTheData  class 23                 1062 1048 1452 3819    "constraint failed"
                                                              4025
deadlock, lock timeout   RetryLater  40P01 40001 55P03        1213 1205              "database is locked"
connection lost          RetryLater  class 08, 57P01-57P03    2002 2003 2006 2013    "disk i/o error"
                                                              1927 1053
server busy              RetryLater  class 53                 1040 1203 1226         —
permission denied        Fatal       42501                    1044 1142 1143 1227    "readonly database"
login refused            Fatal       28000 28P01              1045                   —
unknown database         Fatal       3D000 3F000              1049                   "unable to open"
table changed by hand    Fatal       42P01 42703              1146 1054              "no such table/column"
read-only server         Fatal       25006                    1290 1792 1836         —
=======================  ==========  =======================  =====================  ========================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc

from crmsync.errors import CrmsyncError, Fatal, FixTheData, RetryLater, Unexpected


@dataclass(frozen=True)
class Rule:
    situation: str
    cls: type[CrmsyncError]
    postgresql: frozenset[str] = frozenset()
    mysql: frozenset[int] = frozenset()
    #: regular expressions searched in the lower-cased message
    fragments: tuple[str, ...] = ()
    #: what a person should do (for fatal errors)
    hint: str = ""


ERROR_TABLE: tuple[Rule, ...] = (
    Rule("value too long", FixTheData, frozenset({"22001"}), frozenset({1406}), ("too long",)),
    Rule(
        "number out of range",
        FixTheData,
        frozenset({"22003"}),
        frozenset({1264}),
        ("out of range", "too large", "int too big"),
    ),
    Rule(
        "value of the wrong type",
        FixTheData,
        frozenset({"22P02", "22007", "22008"}),
        frozenset({1366, 1292, 1367}),
        ("datatype mismatch",),
    ),
    Rule(
        "constraint violated",
        FixTheData,
        frozenset({"23"}),
        frozenset({1062, 1048, 1452, 3819, 4025}),
        ("constraint failed",),
    ),
    Rule(
        "deadlock or lock timeout",
        RetryLater,
        frozenset({"40P01", "40001", "55P03"}),
        frozenset({1213, 1205}),
        ("database is locked", "database table is locked", "deadlock"),
    ),
    Rule(
        "connection lost",
        RetryLater,
        frozenset({"08", "57P01", "57P02", "57P03"}),
        frozenset({2002, 2003, 2006, 2013, 1927, 1053}),
        (
            "disk i/o error",
            "connection refused",
            "server closed the connection",
            "terminating connection",
            "lost connection",
            "server has gone away",
            "can't connect",
            "consuming input failed",
        ),
    ),
    Rule(
        "server busy",
        RetryLater,
        frozenset({"53"}),
        frozenset({1040, 1203, 1226}),
        ("too many connections", "max_user_connections"),
    ),
    Rule(
        "permission denied",
        Fatal,
        frozenset({"42501"}),
        frozenset({1044, 1142, 1143, 1227}),
        ("readonly database", "permission denied", "command denied"),
        "grant the connection's user CREATE, SELECT, INSERT, UPDATE and DELETE on the reporting database",
    ),
    Rule(
        "login refused",
        Fatal,
        frozenset({"28000", "28P01"}),
        frozenset({1045}),
        ("password authentication failed", "access denied for user", r'role ".*" does not exist'),
        "check the user and password in the connection's url",
    ),
    Rule(
        "unknown database",
        Fatal,
        frozenset({"3D000", "3F000"}),
        frozenset({1049}),
        ("unable to open database", "unknown database", r'database ".*" does not exist'),
        "create the database (or schema) named in the connection's url and schema, or fix their names",
    ),
    Rule(
        "table changed outside crmsync",
        Fatal,
        frozenset({"42P01", "42703"}),
        frozenset({1146, 1054}),
        ("no such table", "no such column", "has no column named"),
        "a reporting table or column was dropped or renamed by hand: restart crmsync to recreate it",
    ),
    Rule(
        "read-only server",
        Fatal,
        frozenset({"25006"}),
        frozenset({1290, 1792, 1836}),
        ("read-only transaction",),
        "point the connection at a writable server (the primary, not a replica)",
    ),
)


def rule_for(error: BaseException) -> Rule | None:
    """The rule matching a database error (a SQLAlchemy error or the driver's own), if any."""
    orig: Any = getattr(error, "orig", None) or error
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # MySQL drivers: (error number, message)
        for rule in ERROR_TABLE:
            if args[0] in rule.mysql:
                return rule
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate:
        for rule in ERROR_TABLE:
            if sqlstate in rule.postgresql or sqlstate[:2] in rule.postgresql:
                return rule
    text = str(orig).lower()
    for rule in ERROR_TABLE:
        if any(re.search(fragment, text) for fragment in rule.fragments):
            return rule
    return None


def classify(
    error: BaseException,
    *,
    url: str | None = None,
    object_name: str | None = None,
    record: str | None = None,
) -> CrmsyncError:
    """The crmsync error for a database error, carrying the situation, the database's message,
    its code and (for fatal ones) what to do."""
    if isinstance(error, CrmsyncError):
        return error
    orig: Any = getattr(error, "orig", None) or error
    args: tuple[Any, ...] = getattr(orig, "args", ())
    code = getattr(orig, "sqlstate", None)
    text = str(orig)
    if args and isinstance(args[0], int):  # MySQL drivers: (error number, message)
        code = str(args[0])
        text = str(args[1]) if len(args) > 1 else text
    message = " ".join(text.split()) or type(orig).__name__
    message = message if len(message) <= 400 else message[:397] + "..."
    kw: dict[str, Any] = {"url": url, "object_name": object_name, "record": record, "vendor_code": code}
    rule = rule_for(error)
    if rule is not None:
        text = f"{rule.situation}: {message}" + (f" ({rule.hint})" if rule.hint else "")
        return rule.cls(text, details=rule.situation, **kw)
    if isinstance(error, sa_exc.IntegrityError | sa_exc.DataError):
        return FixTheData(f"the database refused the record: {message}", **kw)
    if isinstance(orig, OverflowError) or (
        isinstance(error, sa_exc.StatementError) and isinstance(orig, ValueError | TypeError)
    ):
        return FixTheData(f"the database driver refused a value: {message}", **kw)
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return RetryLater(f"connection lost: {message}", **kw)
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return RetryLater(f"the database failed: {message}", **kw)
    if isinstance(error, sa_exc.ProgrammingError):
        return Fatal(f"the database refused the statement: {message}", **kw)
    return Unexpected.wrap(error, **kw)
