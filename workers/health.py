"""Health checks for `notify health`: broker, database, and each configured provider."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workers.errors import ConfigurationError
from workers.settings import Settings, mask_url


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


def check_mandrill(settings: Settings) -> Check:
    """``users/ping2`` with the API key: reachable and the key accepted, without sending anything.

    ``users/ping2`` answers ``{"PING": "PONG!"}`` and is the ping Mailchimp Transactional's API
    reference describes (Users, "Ping"), which the official clients call as ``users.ping2``; the
    older ``users/ping`` with its bare ``"PONG!"`` string is kept by Mandrill for old clients only.
    """
    import httpx

    name = "email provider mandrill"
    key = settings.mandrill_api_key.get_secret_value()
    if not key:
        return Check(name, False, "MANDRILL_API_KEY is empty")
    url = settings.mandrill_base_url.rstrip("/") + "/users/ping2.json"
    try:
        response = httpx.post(url, json={"key": key}, timeout=PROBE_TIMEOUT)
        answer = response.json() if response.content else None
    except (httpx.HTTPError, ValueError) as exc:
        return _failure(name, exc, settings)
    if response.status_code == 200 and answer == {"PING": "PONG!"}:
        return Check(name, True, "reachable, API key accepted")
    if isinstance(answer, dict) and answer.get("name"):
        return Check(name, False, f"refused: {answer['name']} (HTTP {response.status_code})")
    return Check(name, False, f"unexpected answer, HTTP {response.status_code}")


def check_smtp(settings: Settings) -> Check:
    """Connect, EHLO, STARTTLS and log in as configured, NOOP: the path a send takes, minus the mail."""
    import smtplib
    import ssl

    name = "email provider smtp"
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        conn: smtplib.SMTP
        if settings.smtp_ssl:
            conn = smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=PROBE_TIMEOUT,
                context=ssl.create_default_context(),
            )
        else:
            conn = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=PROBE_TIMEOUT)
        try:
            conn.ehlo()
            if settings.smtp_starttls and not settings.smtp_ssl:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if settings.smtp_username:
                conn.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            code, _ = conn.noop()
        finally:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()
    except (smtplib.SMTPException, OSError) as exc:
        return _failure(f"{name} ({where})", exc, settings)
    if code != 250:
        return Check(name, False, f"{where}: NOOP answered {code}")
    return Check(name, True, f"{where} answers EHLO and NOOP")


def check_twilio(settings: Settings) -> Check:
    """Fetch the account resource: reachable and the credentials accepted, without sending anything."""
    import httpx

    name = "sms provider twilio"
    sid = settings.twilio_account_sid
    token = settings.twilio_auth_token.get_secret_value()
    if not sid or not token:
        return Check(name, False, "TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN is empty")
    url = f"{settings.twilio_base_url.rstrip('/')}/2010-04-01/Accounts/{sid}.json"
    try:
        response = httpx.get(url, auth=(sid, token), timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return _failure(name, exc, settings)
    if response.status_code == 200:
        return Check(name, True, "reachable, credentials accepted")
    if response.status_code == 401:
        return Check(name, False, "credentials refused (HTTP 401)")
    return Check(name, False, f"unexpected answer, HTTP {response.status_code}")


def check_outbox(settings: Settings) -> Check:
    import os

    name = "provider outbox"
    folder = settings.outbox_dir.resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _failure(name, exc, settings)
    if not os.access(folder, os.W_OK):
        return Check(name, False, f"{folder} is not writable")
    return Check(name, True, f"writes to {folder}")


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
PROVIDER_CHECKS: dict[str, Callable[[Settings], Check]] = {
    "mandrill": check_mandrill,
    "smtp": check_smtp,
    "twilio": check_twilio,
    "outbox": check_outbox,
}


def check_parked(settings: Settings) -> list[Check]:
    """A FAIL per provider whose refusal of our key or account has parked notifications.

    The worker parks such rows as `retrying` with the provider's error (see ``Dispatcher._park``);
    the ledger is what every worker process shares, so it is what tells. An unreachable database
    is the database check's to report.
    """
    from sqlalchemy import func, select

    from workers.ledger import make_engine
    from workers.ledger.models import Notification
    from workers.messages import Status
    from workers.providers.redact import redact

    n = Notification
    try:
        engine = make_engine(settings.resolved_database_url)
    except Exception:
        return []
    try:
        with engine.connect() as conn:
            parked = conn.execute(
                select(n.provider, func.count(), func.max(n.error))
                # A parked row is claimed again at each turn: `sending` for that moment, error kept.
                .where(
                    n.status.in_([Status.RETRYING.value, Status.SENDING.value]),
                    n.error.like("ProviderMisconfigured%"),
                )
                .group_by(n.provider)
                .order_by(n.provider)
            ).all()
    except Exception:
        return []
    finally:
        engine.dispose()
    return [
        Check(
            f"provider {provider or '?'}",
            False,
            f"misconfigured, {count} notification(s) parked until it is fixed: {redact(error or '')}",
        )
        for provider, count, error in parked
    ]


def run_checks(settings: Settings, *, providers: bool = True) -> list[Check]:
    checks = [check_settings(settings), check_broker(settings), check_database(settings)]
    # Each configured provider once, in chain order (outbox may serve both channels). A container's
    # liveness check leaves them out: a provider outage is not a reason to restart the worker.
    for name in dict.fromkeys((*settings.email_provider, *settings.sms_provider)) if providers else ():
        checks.append(PROVIDER_CHECKS[name](settings))
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
