"""A statement run on the pooled driver connection behaves as SQLAlchemy's own execution would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, bindparam, column, select, table, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from workers.ledger import make_engine
from workers.ledger.driver import DriverStatement
from workers.ledger.statements import NOTIFICATIONS, param

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_engine: Engine) -> Engine:
    return postgres_engine


def _now_back(engine: Engine) -> DriverStatement:
    """Gives back the timestamp it was given, typed as the ledger's timestamps are."""
    return DriverStatement(engine, select(param("b_now", NOTIFICATIONS, "updated_at").label("at")))


def test_parameters_and_columns_go_through_the_columns_own_types(engine: Engine) -> None:
    # UTCDateTime: an aware time in another zone is stored as UTC and read back in UTC.
    plus_two = datetime(2026, 12, 3, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    (row,) = _now_back(engine).run({"b_now": plus_two})
    assert row.at == plus_two and row.at.tzinfo is UTC
    # ...and refuses a naive one before anything is sent, as on the plain path.
    with pytest.raises(ValueError, match="naive datetime"):
        _now_back(engine).run({"b_now": datetime(2026, 12, 3, 12, 0)})


def test_constants_bound_at_build_time_are_kept_and_names_answer_by_attribute(engine: Engine) -> None:
    stmt = select(bindparam("b_given").label("given"), bindparam("fixed", "built in").label("fixed"))
    (row,) = DriverStatement(engine, stmt).run({"b_given": "from the caller"})
    assert (row.given, row.fixed) == ("from the caller", "built in")
    (row,) = DriverStatement(engine, text("SELECT CAST(:n AS int) + 1")).run({"n": 41})
    assert row[0] == 42


def test_a_statement_that_rewrites_itself_per_execution_is_refused(engine: Engine) -> None:
    things = table("things", column("id"))
    with pytest.raises(ValueError, match="expanding"):
        DriverStatement(
            engine, select(things.c.id).where(things.c.id.in_(bindparam("b_ids", expanding=True)))
        )


def test_it_commits_on_its_own_and_leaves_the_pooled_connection_as_it_found_it(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE kept (n int)"))
    DriverStatement(engine, text("INSERT INTO kept VALUES (:n)"), rows=False).run({"n": 1})
    # Committed: another connection sees it.
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM kept")).scalar() == 1
    # The pool's connection is out of autocommit again: a transaction on it still rolls back whole.
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("INSERT INTO kept VALUES (2)"))
        raise RuntimeError("roll it back")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM kept")).scalar() == 1
        assert conn.connection.driver_connection is not None
        assert conn.connection.driver_connection.autocommit is False


def test_a_bad_statement_raises_what_sqlalchemy_raises_without_the_parameters(engine: Engine) -> None:
    stmt = DriverStatement(engine, text("SELECT * FROM no_such_table WHERE secret = :secret"))
    with pytest.raises(ProgrammingError) as raised:
        stmt.run({"secret": "person@example.org"})
    assert "person@example.org" not in str(raised.value)
    assert not raised.value.connection_invalidated
    # The connection was healthy and went back to the pool out of autocommit.
    with engine.connect() as conn:
        assert conn.connection.driver_connection is not None
        assert conn.connection.driver_connection.autocommit is False


def test_a_connection_the_server_dropped_is_discarded_and_reported_as_away(engine: Engine) -> None:
    stmt = DriverStatement(engine, text("SELECT 1"))
    stmt.run({})
    with engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    # The same pooled connection comes back (the pool hands out its last returned one first).
    victim = make_engine(engine.url.render_as_string(hide_password=False))
    with victim.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid or 0)})")
    victim.dispose()
    with pytest.raises(OperationalError) as raised:
        stmt.run({})
    assert raised.value.connection_invalidated
    # The pool dropped it: the next run gets a fresh connection and works.
    assert stmt.run({})[0][0] == 1


def test_a_database_that_cannot_be_reached_is_reported_as_away() -> None:
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    try:
        with pytest.raises(OperationalError):
            DriverStatement(engine, text("SELECT 1")).run({})
    finally:
        engine.dispose()
