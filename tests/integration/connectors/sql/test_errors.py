"""Each row of the error table (:mod:`crmsync.connectors.sql.errors`), provoked for real on each
database where the situation exists (SQLite has no server: no login, no connection to lose)."""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from crmsync.connectors.base import Write
from crmsync.connectors.sql import ColumnSpec, ObjectSpec, SqlConnector
from crmsync.connectors.sql.errors import classify
from crmsync.connectors.sql.settings import backend_of
from crmsync.errors import CrmsyncError, Fatal, FixTheData, RetryLater

from .conftest import SERVERS_ONLY

Make = Callable[..., SqlConnector]
CARD = ObjectSpec("card", (ColumnSpec("name", "text", 20), ColumnSpec("position", "integer")))
NOW = dt.datetime(2025, 3, 3, 9, 0)


def sorted_error(connector: SqlConnector, statement: Callable[[sa.Connection], object]) -> CrmsyncError:
    """The error ``statement`` raises on the connector's database, as the connector sorts it."""
    try:
        with connector.engine.begin() as conn:
            statement(conn)
    except sa.exc.SQLAlchemyError as exc:
        return classify(exc)
    except OverflowError as exc:  # sqlite3 raises it unwrapped
        return classify(exc)
    raise AssertionError("the statement did not fail")


def card_row(source_id: str, **values: object) -> dict[str, object]:
    return {"source_id": source_id, "source_system": "t", "updated_at": NOW, **values}


# -- fix the data --------------------------------------------------------------------------------


def test_a_value_too_long_is_fix_the_data(make_connector: Make) -> None:
    connector = make_connector([CARD])
    [result] = connector.write_batch("card", [Write("k", "upsert", {"name": "x" * 21}, external_id="c1")])
    assert isinstance(result.error, FixTheData) and "value too long" in result.error.message
    if connector.settings.backend != "sqlite":  # SQLite keeps any length: crmsync checks it first
        raw = sorted_error(
            connector, lambda c: c.execute(sa.insert(connector.table("card")), card_row("c", name="x" * 21))
        )
        assert isinstance(raw, FixTheData) and raw.vendor_code in ("22001", "1406"), raw


def test_a_number_out_of_range_is_fix_the_data(make_connector: Make) -> None:
    connector = make_connector([CARD])
    connector.prepare()
    table = connector.table("card")
    error = sorted_error(connector, lambda c: c.execute(sa.insert(table), card_row("c", position=2**70)))
    assert isinstance(error, FixTheData) and error.details == "number out of range", error


def test_a_value_of_the_wrong_type_is_fix_the_data(make_connector: Make) -> None:
    connector = make_connector([CARD])
    connector.prepare()
    events = connector.events_table
    row = {"id": "abc", "at": NOW, "action": "x", "object_name": "card", "source_id": "c", "recorded_at": NOW}
    error = sorted_error(connector, lambda c: c.execute(sa.insert(events).values(**row)))
    assert isinstance(error, FixTheData) and error.details == "value of the wrong type", error


def test_a_violated_constraint_is_fix_the_data(make_connector: Make) -> None:
    connector = make_connector([CARD])
    connector.prepare()
    table = connector.table("card")
    error = sorted_error(connector, lambda c: c.execute(sa.insert(table), [card_row("c"), card_row("c")]))
    assert isinstance(error, FixTheData) and error.details == "constraint violated", error


# -- retry later ---------------------------------------------------------------------------------


@contextmanager
def row_locked(url: str, table: str) -> Iterator[None]:
    """Another session holds a write lock on ``table`` (SQLite: on the whole file) until the block ends."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
        conn.exec_driver_sql(f"UPDATE {table} SET name = 'held' WHERE source_id = 'c1'")
        try:
            yield
        finally:
            conn.rollback()
    engine.dispose()


def test_a_lock_wait_timeout_is_retry_later(make_connector: Make, sql_url: str) -> None:
    connector = make_connector([CARD])
    connector.write_batch("card", [Write("k", "upsert", {"name": "one"}, external_id="c1")])
    table = connector.table("card").name
    impatient = sa.create_engine(sql_url, poolclass=sa.pool.NullPool, connect_args={"timeout": 0.05})
    if connector.settings.backend != "sqlite":
        impatient = sa.create_engine(sql_url, poolclass=sa.pool.NullPool)
    session = {
        "sqlite": "SELECT 1",
        "postgresql": "SET lock_timeout = '50ms'",
        "mysql": "SET innodb_lock_wait_timeout = 1",
    }[connector.settings.backend]
    with row_locked(sql_url, table):
        try:
            with impatient.begin() as conn:
                conn.exec_driver_sql(session)
                conn.exec_driver_sql(f"UPDATE {table} SET name = 'mine' WHERE source_id = 'c1'")
        except sa.exc.SQLAlchemyError as exc:
            error = classify(exc)
        else:
            raise AssertionError("no lock timeout")
    impatient.dispose()
    assert isinstance(error, RetryLater) and error.details == "deadlock or lock timeout", error


@SERVERS_ONLY
def test_a_deadlock_is_retry_later(make_connector: Make, sql_url: str) -> None:
    connector = make_connector([CARD], url=sql_url)
    connector.write_batch(
        "card",
        [
            Write("k1", "upsert", {"name": "1"}, external_id="c1"),
            Write("k2", "upsert", {"name": "2"}, external_id="c2"),
        ],
    )
    table = connector.table("card").name
    engine = sa.create_engine(sql_url, poolclass=sa.pool.NullPool)
    barrier = threading.Barrier(2)
    errors: list[CrmsyncError] = []

    def lock(first: str, second: str) -> None:
        try:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET deadlock_timeout = '50ms'")
                conn.exec_driver_sql(f"UPDATE {table} SET name = 'x' WHERE source_id = '{first}'")
                barrier.wait()
                conn.exec_driver_sql(f"UPDATE {table} SET name = 'y' WHERE source_id = '{second}'")
        except sa.exc.SQLAlchemyError as exc:
            errors.append(classify(exc))

    threads = [threading.Thread(target=lock, args=pair) for pair in (("c1", "c2"), ("c2", "c1"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    [error] = errors  # one of the two is chosen as the victim; the other commits
    assert isinstance(error, RetryLater) and error.vendor_code in ("40P01", "1213"), error


@SERVERS_ONLY
def test_a_lost_connection_is_retry_later(make_connector: Make, sql_url: str) -> None:
    connector = make_connector([CARD], url=sql_url)
    connector.prepare()
    admin = sa.create_engine(sql_url, poolclass=sa.pool.NullPool)
    postgres = admin.dialect.name == "postgresql"
    try:
        with connector.engine.connect() as conn:
            me = conn.exec_driver_sql(
                "SELECT pg_backend_pid()" if postgres else "SELECT CONNECTION_ID()"
            ).scalar()
            with admin.connect() as other:
                other.exec_driver_sql(
                    f"SELECT pg_terminate_backend({me})" if postgres else f"KILL CONNECTION {me}"
                )
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as exc:
        error = classify(exc)
    else:
        raise AssertionError("the connection survived")
    finally:
        admin.dispose()
    assert isinstance(error, RetryLater) and error.details == "connection lost", error
    connector.check()  # the pool replaces the dead connection


@SERVERS_ONLY
def test_an_unreachable_server_is_retry_later(make_connector: Make, sql_url: str) -> None:
    connector = make_connector(url=make_url(sql_url).set(port=1).render_as_string(hide_password=False))
    with pytest.raises(RetryLater, match="connection lost"):
        connector.check()


@SERVERS_ONLY
def test_a_server_out_of_connections_is_retry_later(make_connector: Make, sql_url: str) -> None:
    postgres = sql_url.startswith("postgresql")
    with database_user(sql_url, limit=0 if postgres else 1) as url, ExitStack() as stack:
        if not postgres:  # MariaDB: another session uses the one connection allowed
            holder = sa.create_engine(url, poolclass=sa.pool.NullPool)
            stack.callback(holder.dispose)
            stack.enter_context(holder.connect())
        with pytest.raises(RetryLater, match="server busy"):
            make_connector(url=url).check()


# -- fatal ---------------------------------------------------------------------------------------


@contextmanager
def database_user(url: str, *, limit: int | None = None, grant: str = "SELECT") -> Iterator[str]:
    """A new login on the server of ``url`` allowed only ``grant`` on its database (dropped after)."""
    name = f"crmsync_u_{secrets.token_hex(3)}"
    parsed = make_url(url)
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    postgres = admin.dialect.name == "postgresql"
    with admin.connect() as conn:
        if postgres:
            conn.exec_driver_sql(
                f"CREATE ROLE {name} LOGIN" + (f" CONNECTION LIMIT {limit}" if limit is not None else "")
            )
        else:
            extra = f" WITH MAX_USER_CONNECTIONS {limit}" if limit is not None else ""
            for host in ("%%", "localhost", "127.0.0.1"):  # %% is a lone % to the driver
                conn.exec_driver_sql(f"CREATE USER '{name}'@'{host}'")
                conn.exec_driver_sql(f"GRANT {grant} ON {parsed.database}.* TO '{name}'@'{host}'{extra}")
    try:
        yield parsed.set(username=name, password=None).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if postgres:
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %(n)s",
                    {"n": name},
                )
                conn.exec_driver_sql(f"DROP ROLE {name}")
            else:
                for host in ("%%", "localhost", "127.0.0.1"):  # %% is a lone % to the driver
                    conn.exec_driver_sql(f"DROP USER '{name}'@'{host}'")
        admin.dispose()


def test_permission_denied_is_fatal(make_connector: Make, sql_url: str, tmp_path: Path) -> None:
    if backend_of(sql_url) == "sqlite":
        make_connector([CARD]).prepare()  # the file exists, and is opened read-only
        path = make_url(sql_url).database
        with pytest.raises(Fatal, match="permission denied") as refused:
            make_connector([CARD], url=f"sqlite:///file:{path}?mode=ro&uri=true").write_batch(
                "card", [Write("k", "upsert", {"name": "x"}, external_id="c1")]
            )
    else:
        with database_user(sql_url) as url, pytest.raises(Fatal, match="permission denied") as refused:
            make_connector([CARD], url=url).prepare()
    assert "grant the connection's user" in str(refused.value)


@SERVERS_ONLY
def test_a_refused_login_is_fatal(make_connector: Make, sql_url: str) -> None:
    nobody = make_url(sql_url).set(username=f"nobody_{secrets.token_hex(3)}")
    connector = make_connector(url=nobody.render_as_string(hide_password=False))
    with pytest.raises(Fatal, match="login refused"):
        connector.check()


def test_an_unknown_database_is_fatal(make_connector: Make, sql_url: str, tmp_path: Path) -> None:
    if backend_of(sql_url) == "sqlite":
        url = f"sqlite:///{tmp_path / 'missing-folder' / 'reports.db'}"
    else:
        url = (
            make_url(sql_url)
            .set(database=f"missing_{secrets.token_hex(3)}")
            .render_as_string(hide_password=False)
        )
    with pytest.raises(Fatal, match="unknown database") as refused:
        make_connector(url=url).check()
    assert "create the database" in str(refused.value)


def test_a_table_dropped_by_hand_is_fatal(make_connector: Make) -> None:
    connector = make_connector([CARD])
    connector.prepare()
    with connector.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {connector.table('card').name}")
    with pytest.raises(Fatal, match="table changed outside crmsync"):
        connector.write_batch("card", [Write("k", "upsert", {"name": "x"}, external_id="c1")])


@SERVERS_ONLY
def test_a_read_only_server_is_fatal(make_connector: Make, sql_url: str) -> None:
    connector = make_connector([CARD], url=sql_url)
    connector.prepare()
    read_only = (
        "SET TRANSACTION READ ONLY" if sql_url.startswith("postgresql") else "START TRANSACTION READ ONLY"
    )
    table = connector.table("card")

    def write(conn: sa.Connection) -> None:
        conn.exec_driver_sql(read_only)
        conn.execute(sa.insert(table), card_row("c"))

    error = sorted_error(connector, write)
    assert isinstance(error, Fatal) and error.details == "read-only server", error
