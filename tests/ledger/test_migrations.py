"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and
the newest one goes down and up again with the rows in place."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from workers.ledger import make_engine
from workers.ledger.migrate import MIGRATIONS, current_revision, head_revision, upgrade
from workers.ledger.models import Base


def test_migrations_match_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        upgrade(engine)  # a second run at every start is a no-op
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def _downgrade(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("notifications")}


def test_0004_adds_the_recipient_key_empty_and_takes_it_away_again(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0003")
        assert "recipient_key" not in _columns(engine)
        now = datetime(2026, 12, 3, tzinfo=UTC)
        with engine.begin() as conn:
            # A row written before 0004, by the worker of that time.
            conn.execute(
                text(
                    "INSERT INTO notifications (id, channel, status, attempts, cycle_attempts_base,"
                    " cycle_started_at, created_at, updated_at) VALUES ('old-1', 'email', 'queued', 0, 0,"
                    " :now, :now, :now)"
                ),
                {"now": now},
            )
        upgrade(engine)
        assert current_revision(engine) == "0004" == head_revision()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, recipient_key FROM notifications")).all() == [
                ("old-1", None)
            ]
        _downgrade(engine, "0003")
        assert current_revision(engine) == "0003"
        assert "recipient_key" not in _columns(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM notifications")).scalars().all() == ["old-1"]
        upgrade(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()
