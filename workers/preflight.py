"""Start-up checks: the ledger URL opens a migrated database and the providers can be built.

A setting that cannot work must stop `notify worker` (and a CLI command) at start with one line
naming the variable, not start a worker that then fails on every message or every sweep.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from workers.errors import ConfigurationError
from workers.settings import Settings, mask_url

DATABASE = "NOTIFY_DATABASE_URL"


def _first_line(settings: Settings, error: BaseException) -> str:
    """The driver's own words (``connection refused``, ``database "x" does not exist``), secrets out."""
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()
    return settings.scrub(" ".join(detail[0].split()) if detail else type(error).__name__)


def open_ledger(settings: Settings, *, create: bool) -> Engine:
    """An engine on a reachable ledger at the current schema; ConfigurationError naming the setting.

    ``create``: a missing SQLite file and an empty schema are made (the worker with auto-migrate,
    `notify db upgrade`); otherwise they are an error and nothing is written, not even a folder.
    """
    from workers.ledger import make_engine
    from workers.ledger.migrate import current_revision, head_revision, upgrade

    url = settings.resolved_database_url
    shown = mask_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"{DATABASE}: not a database URL; write postgresql://USER@HOST/DB or sqlite:///PATH"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite" and not create:
        path = parsed.database or ""
        if path and path != ":memory:" and not Path(path).is_file():
            raise ConfigurationError(
                f"{DATABASE}: no ledger at {path}; a worker or `notify db upgrade` creates it"
            )
    try:
        engine = make_engine(url)
    except NoSuchModuleError:
        raise ConfigurationError(
            f"{DATABASE}: unknown database scheme {parsed.drivername!r}; use postgresql:// or sqlite:///"
        ) from None
    except ImportError as exc:
        raise ConfigurationError(
            f"{DATABASE}: no driver installed for {parsed.drivername!r} ({exc.name or exc})"
        ) from None
    except (SQLAlchemyError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"{DATABASE}: cannot use {shown}: {_first_line(settings, exc)}") from None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        if create:
            upgrade(engine)
            return engine
        current, head = current_revision(engine), head_revision()
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise ConfigurationError(f"{DATABASE}: cannot open {shown}: {_first_line(settings, exc)}") from None
    except BaseException:
        engine.dispose()
        raise
    if current != head:
        engine.dispose()
        state = "has no ledger schema" if current is None else f"has schema {current}, expected {head}"
        raise ConfigurationError(f"{DATABASE}: {shown} {state}; run `notify db upgrade`")
    return engine


def check_providers(settings: Settings) -> None:
    """Builds (and closes) the configured providers and rate limiter: a missing key stops us here."""
    from workers.providers.registry import build_email_provider, build_sms_provider
    from workers.ratelimit import build_limiter

    limiter = build_limiter(settings)
    try:
        build_email_provider(settings, limiter=limiter).close()
        build_sms_provider(settings, limiter=limiter).close()
    finally:
        if limiter is not None:
            limiter.close()


def check_worker_start(settings: Settings) -> None:
    """Everything a worker needs before it takes a message: ledger (migrated if allowed), providers."""
    check_providers(settings)  # first: it writes nothing, so a refused start leaves no ledger behind
    open_ledger(settings, create=settings.auto_migrate).dispose()
