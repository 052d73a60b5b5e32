"""Health checks for `notify health`: broker, database, and each configured provider."""

from __future__ import annotations

from dataclasses import dataclass

from workers.errors import ConfigurationError
from workers.settings import EMAIL_PROVIDERS, Settings, mask_url


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_database(settings: Settings) -> Check:
    """The ledger opens and is at the current schema; never creates a file, folder or table."""
    from workers.ledger.migrate import current_revision
    from workers.preflight import open_ledger

    try:
        engine = open_ledger(settings, create=False)
    except ConfigurationError as exc:
        return Check("database", False, str(exc))
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    return Check("database", True, f"reachable, schema at {current}")


def check_settings(settings: Settings) -> Check:
    """Settings a worker would refuse at start: providers without credentials, bad rate limits."""
    from workers.preflight import check_providers

    try:
        check_providers(settings)
    except ConfigurationError as exc:
        return Check("settings", False, settings.scrub(str(exc)))
    return Check("settings", True, "a worker would start with these")


def check_broker(settings: Settings) -> Check:
    from kombu.connection import Connection

    from workers.broker import broker_settings

    conf = broker_settings(settings)
    try:
        with Connection(
            conf["broker_url"], transport_options=conf.get("broker_transport_options", {})
        ) as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        return Check("broker", False, settings.scrub(f"{type(exc).__name__}: {exc}".splitlines()[0]))
    return Check("broker", True, f"reachable ({mask_url(conf['broker_url'])})")


def _failure(name: str, exc: BaseException, settings: Settings) -> Check:
    # Exception text can quote a server's reply, which can quote an address or a URL: scrub it.
    from workers.providers.redact import redact

    return Check(name, False, redact(settings.scrub(f"{type(exc).__name__}: {exc}".splitlines()[0])))


def check_provider(name: str, settings: Settings) -> Check:
    """Provider ``name`` built as the worker builds it (the registry), then asked to ``probe()``
    itself: reachable and its credentials accepted, without sending anything."""
    from workers.providers.redact import redact
    from workers.providers.registry import build_named_provider

    # Outbox may serve both channels, so its line names none.
    channel = "" if name == "outbox" else "email " if name in EMAIL_PROVIDERS else "sms "
    title = f"{channel}provider {name}"
    try:
        provider = build_named_provider(name, settings)
    except ConfigurationError as exc:
        return Check(title, False, settings.scrub(str(exc)))
    try:
        found = provider.probe(PROBE_TIMEOUT)
    finally:
        provider.close()
    # A quoted exception can quote a server's reply, which can quote an address or a URL: scrub it.
    detail = redact(settings.scrub(found.detail)) if found.quoted else found.detail
    return Check(f"{title} ({found.where})" if found.where else title, found.ok, detail)


def check_rate_limiter(settings: Settings) -> Check:
    """Redis for the shared rate limits, when any are set (the limiter lets sends through without it)."""
    import redis

    try:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT
        )
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, ValueError) as exc:
        return _failure("rate limiter", exc, settings)
    return Check("rate limiter", True, f"Redis reachable ({mask_url(settings.redis_url)})")


PROBE_TIMEOUT = 5.0


def check_parked(settings: Settings) -> list[Check]:
    """A FAIL per provider whose refusal of our key or account has parked notifications.

    The worker parks such rows as `retrying` with the provider's error (see ``Dispatcher._park``);
    the ledger is what every worker process shares, so it is what tells. An unreachable database
    is the database check's to report.
    """
    from workers.ledger import make_engine, parked_providers
    from workers.providers.redact import redact

    try:
        engine = make_engine(settings.resolved_database_url)
    except Exception:
        return []
    try:
        parked = parked_providers(engine)
    except Exception:
        return []
    finally:
        engine.dispose()
    return [
        Check(
            f"provider {item.provider or '?'}",
            False,
            f"misconfigured, {item.count} notification(s) parked until it is fixed: "
            f"{redact(item.error or '')}",
        )
        for item in parked
    ]


def run_checks(settings: Settings, *, providers: bool = True) -> list[Check]:
    checks = [check_settings(settings), check_broker(settings), check_database(settings)]
    # Each configured provider once, in chain order (outbox may serve both channels). A container's
    # liveness check leaves them out: a provider outage is not a reason to restart the worker.
    for name in dict.fromkeys((*settings.email_provider, *settings.sms_provider)) if providers else ():
        checks.append(check_provider(name, settings))
    # Parked rows are read from the ledger: only when the database check found it usable (a bad
    # NOTIFY_DATABASE_URL is that check's FAIL line, not an error of this one).
    if providers and checks[2].ok:
        checks.extend(check_parked(settings))
    if settings.rate_limits:
        checks.append(
            check_rate_limiter(settings)
            if settings.redis_url
            else Check("rate limiter", False, "NOTIFY_RATE_LIMITS is set but NOTIFY_REDIS_URL is empty")
        )
    return checks
