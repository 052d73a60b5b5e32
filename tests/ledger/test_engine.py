"""The ledger engine: a connection dropped while idle in the pool is replaced, not handed out."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.conftest import POSTGRES_ADMIN_URL
from workers.ledger import make_engine


def _backend_pid(engine_url: str, *, ping_after_idle: float) -> tuple[int, int]:
    """The backend pid before and after the server killed the pooled connection."""
    engine = make_engine(engine_url, ping_after_idle=ping_after_idle, pool_size=1, max_overflow=0)
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            before = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
        with engine.connect() as conn:
            after = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        return before, after
    finally:
        engine.dispose()
        admin.dispose()


def test_an_idle_connection_killed_by_the_server_is_replaced_before_use(postgres_url: str) -> None:
    before, after = _backend_pid(postgres_url, ping_after_idle=0.0)
    assert after != before


def test_a_busy_connection_is_not_pinged(postgres_url: str) -> None:
    # The counterpart: within the idle window no ping runs, so the dead connection surfaces as an
    # error on the next statement (and SQLAlchemy then invalidates the pool).
    with pytest.raises(OperationalError):
        _backend_pid(postgres_url, ping_after_idle=3600.0)
