"""Every statement a database driver runs on an engine: for tests that count round trips.

SQLAlchemy's ``before_cursor_execute`` sees only what runs through its ``Connection``; the ledger's
PostgreSQL fast paths (``workers.ledger.driver``) run on the pooled driver connection directly. On
PostgreSQL the count is therefore taken at psycopg's cursor, which both paths use; SQLite has no
fast path, so SQLAlchemy's event sees everything there. BEGIN and COMMIT are no statements here.
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import Engine, event


def driver_statements(engine: Engine) -> list[str]:
    """Every statement run on ``engine`` from now on, whitespace folded, in order."""
    seen: list[str] = []
    if engine.dialect.name != "postgresql":

        def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            seen.append(" ".join(statement.split()))

        event.listen(engine, "before_cursor_execute", note)
        return seen

    class Counting(psycopg.Cursor[Any]):
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(" ".join(str(query).split()))
            return super().execute(query, *args, **kwargs)

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(" ".join(str(query).split()))
            return super().executemany(query, *args, **kwargs)

    def counting(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.cursor_factory = Counting

    # Only connections made from now on get the counting cursor: drop the pooled ones.
    engine.dispose()
    event.listen(engine, "connect", counting)
    return seen
