"""Creates the SQLAlchemy engine for a ledger URL, with the per-backend settings it needs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

# A pooled connection idle longer than this is pinged before use; a busy one is not.
PING_AFTER_IDLE_SECONDS = 5.0


def make_engine(url: str, *, ping_after_idle: float = PING_AFTER_IDLE_SECONDS, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so worker threads can share it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Statement parameters hold addresses and bodies: never let them into an exception's text.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "postgresql":
        # An unreachable host must fail fast, not hang the bus consumer inside connect().
        kwargs.setdefault("connect_args", {"connect_timeout": 5})
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkin", _stamp_idle)
        event.listen(engine, "checkout", _idle_ping(ping_after_idle))
    return engine


def _stamp_idle(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info["idle_since"] = time.monotonic()


def _idle_ping(after: float) -> Callable[[Any, Any, Any], None]:
    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        _ping_if_idle(dbapi_connection, record, after)

    return ping_if_idle


def _ping_if_idle(dbapi_connection: Any, record: Any, after: float) -> None:
    """Ping a connection only when it sat idle: a database restart or a firewall that dropped it
    shows on the first statement after a quiet spell. SQLAlchemy's ``pool_pre_ping`` pings on
    every checkout instead, one extra round trip per statement on the hot path.
    Raising ``DisconnectionError`` makes the pool drop this connection and hand out a fresh one.
    """
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < after:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        if not getattr(dbapi_connection, "autocommit", True):
            dbapi_connection.rollback()  # the ping must not leave a transaction open
    except Exception as error:
        raise exc.DisconnectionError(
            f"pooled connection failed its idle ping: {type(error).__name__}"
        ) from error


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (the CLI) run while a worker writes; the busy timeout turns brief lock
    # contention between worker threads into a wait instead of "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
