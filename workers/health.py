"""Health checks for `notify health`: broker, database, and each configured provider."""

from __future__ import annotations

from dataclasses import dataclass

from workers.settings import Settings


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_database(settings: Settings) -> Check:
    from sqlalchemy import text

    from workers.ledger import make_engine
    from workers.ledger.migrate import current_revision, head_revision

    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current, head = current_revision(engine), head_revision()
    except Exception as exc:
        return Check("database", False, f"{type(exc).__name__}: {exc}".splitlines()[0])
    finally:
        engine.dispose()
    if current != head:
        return Check(
            "database", False, f"schema at {current or 'nothing'}, expected {head}; run `notify db upgrade`"
        )
    return Check("database", True, f"reachable, schema at {current}")


def check_broker(settings: Settings) -> Check:
    from kombu.connection import Connection

    from workers.celery_app import broker_settings

    conf = broker_settings(settings)
    try:
        with Connection(
            conf["broker_url"], transport_options=conf.get("broker_transport_options", {})
        ) as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        return Check("broker", False, f"{type(exc).__name__}: {exc}".splitlines()[0])
    return Check("broker", True, f"reachable ({conf['broker_url'].split('@')[-1]})")


def run_checks(settings: Settings) -> list[Check]:
    return [check_broker(settings), check_database(settings)]
