"""Runs one compiled statement on a driver connection from the engine's pool: the ``FastPath`` writes.

A delivery runs two of these and intake one per batch. Around such a statement SQLAlchemy's
``Connection`` (its checkout, the autocommit switch, the execution context) and its ``Result``
cost more CPU than the driver's own round trip: ``bench/ledger_paths.py`` measures it. So the
statement is still built with SQLAlchemy Core, and compiled by the engine's dialect once, but it
runs on the pooled driver connection itself:

- the parameters go through the same type processors as on the plain path (``UTCDateTime``
  refuses a naive timestamp there too), and the returned columns through the columns' own;
- a driver error comes out as the SQLAlchemy exception the plain path would raise, with the
  parameters hidden, and a connection that broke is dropped from the pool, as SQLAlchemy does.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Engine, PoolProxiedConnection
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

# The key of a connection's kept cursor in the pool's per-connection ``info``.
_CURSOR = "workers.ledger.driver.cursor"


class DriverStatement:
    """A Core statement compiled once for ``engine``'s dialect, run in autocommit on its pool.

    The values the statement bound when it was built (a status, ``attempts + 1``) are kept from
    compilation; the caller's parameters fill in, or override, the rest by name.
    """

    def __init__(self, engine: Engine, statement: Executable, *, rows: bool = True) -> None:
        if not isinstance(statement, ClauseElement):
            raise TypeError(f"{type(statement).__name__} is not a compilable statement")
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if any(bind.expanding or bind.literal_execute for bind in compiled.bind_names):
            # Those rewrite the SQL on every execution; statements.status_in avoids them.
            raise ValueError("a driver statement cannot take an expanding or literal parameter")
        self._engine = engine
        # Whether it answers with rows (RETURNING, SELECT): known here, so no run asks the cursor
        # for its description, which the driver builds anew on every call.
        self._rows = rows
        self._sql = str(compiled)
        self._defaults: dict[str, Any] = dict(compiled.params)
        self._bind: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self._bind[name] = process
        columns = list(getattr(statement, "selected_columns", ()))
        self._results: list[tuple[int, Callable[[Any], Any]]] = []
        for index, column in enumerate(columns):
            process = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if process is not None:
                self._results.append((index, process))
        names = [column.key for column in columns]
        # Rows answer by attribute, as SQLAlchemy's do (``row.attempts``); a text statement's by index.
        self._row: Callable[..., Sequence[Any]] | None = namedtuple("Row", names) if names else None
        self._dbapi_error: type[Exception] = dialect.loaded_dbapi.Error

    def run(self, params: Mapping[str, Any]) -> list[Any]:
        """Execute with ``params``; every row it returns. Raises SQLAlchemy's ``DBAPIError`` kinds."""
        values = {**self._defaults, **params}
        for name, process in self._bind.items():
            values[name] = process(values[name])
        dialect = self._engine.dialect
        try:
            proxied = self._engine.raw_connection()
        except self._dbapi_error as exc:
            raise self._wrapped(exc, invalidated=False) from exc
        conn: Any = proxied.driver_connection
        try:
            rows = self._execute(conn, self._cursor(proxied, conn), values)
        except self._dbapi_error as exc:
            # A connection left in autocommit must not go back to the pool either: a transaction on
            # it would commit each of its statements on its own.
            broken = (
                dialect.is_disconnect(cast(Any, exc), conn, None)
                or bool(conn.closed)
                or bool(conn.autocommit)
            )
            if broken:
                proxied.invalidate(exc)
            raise self._wrapped(exc, invalidated=broken) from exc
        finally:
            proxied.close()
        return [self._shaped(row) for row in rows]

    @staticmethod
    def _cursor(proxied: PoolProxiedConnection, conn: Any) -> Any:
        """The connection's own cursor for driver statements, made on its first one and kept with it
        in the pool's record of the connection (a new connection gets a new one)."""
        kept = proxied.info.get(_CURSOR)
        if kept is None or kept[0] is not conn:
            kept = proxied.info[_CURSOR] = (conn, conn.cursor())
        return kept[1]

    def _execute(self, conn: Any, cursor: Any, values: Mapping[str, Any]) -> list[Sequence[Any]]:
        # Autocommit for this one statement: a single statement is its own transaction, so no
        # BEGIN and COMMIT round trips. Switched back before the connection returns to the pool.
        conn.autocommit = True
        try:
            cursor.execute(self._sql, values)
            return list(cursor.fetchall()) if self._rows else []
        finally:
            conn.autocommit = False

    def _shaped(self, row: Sequence[Any]) -> Any:
        if self._results:
            values = list(row)
            for index, process in self._results:
                values[index] = process(values[index])
            row = values
        return row if self._row is None else self._row(*row)

    def _wrapped(self, exc: Exception, *, invalidated: bool) -> StatementError:
        """The driver's error as SQLAlchemy raises it on the plain path (``OperationalError`` for a
        database that went away), its parameters hidden: they hold addresses and bodies."""
        return DBAPIError.instance(
            self._sql,
            None,
            exc,
            self._dbapi_error,
            hide_parameters=True,
            connection_invalidated=invalidated,
            dialect=self._engine.dialect,
            ismulti=False,
        )
