"""Every knob, read once from the environment (NOTIFY_*, MANDRILL_*, SMTP_*, TWILIO_*)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from workers.errors import ConfigurationError
from workers.event_types import EVENT_TYPES

EMAIL_PROVIDERS = frozenset({"mandrill", "smtp", "outbox"})
SMS_PROVIDERS = frozenset({"twilio", "outbox"})


# Durations in seconds: finite and at most a year, so no timedelta or sleep ever overflows on them.
YEAR = 365 * 86400.0
Seconds = Annotated[float, Field(gt=0, le=YEAR, allow_inf_nan=False)]
# Settings that hold a URL which may carry a password: never shown as they are.
URL_FIELDS = ("broker_url", "database_url", "redis_url")
MASK = "***"


def mask_url(url: str) -> str:
    """``url`` with any password (and anything unparseable after the scheme) replaced by ``***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))
    except ValueError:
        # Not a URL we can take apart: show only its scheme, never the rest.
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://{MASK}" if sep else MASK


def _provider_chain(value: object, allowed: frozenset[str], env: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [part.strip().lower() for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = [str(part).strip().lower() for part in value]
    else:
        raise ValueError(f"{env} must be a comma-separated list")
    if not items:
        raise ValueError(f"{env} names no provider")
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise ValueError(f"{env}: unknown provider {unknown[0]!r}; choose from {sorted(allowed)}")
    return tuple(dict.fromkeys(items))


class Settings(BaseSettings):
    """All configuration; field ``x`` is read from ``NOTIFY_X`` unless an alias says otherwise."""

    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore", frozen=True)

    broker_url: str = ""  # empty: the embedded filesystem transport under state_dir
    database_url: str = ""  # empty: a SQLite file in the working directory
    state_dir: Path = Path(".notify")  # embedded broker folders live here
    # Signs `deliveries list` page tokens; empty: a random key kept in state_dir/page-token.key.
    page_token_key: SecretStr = SecretStr("")
    task_queue: str = "notify"
    event_exchange: str = "events"
    event_queue: str = "notify.events"
    event_routing_keys: Annotated[tuple[str, ...], NoDecode] = EVENT_TYPES
    consume_events: bool = True
    # Bus messages settled together (one ledger write); 1 settles each on its own.
    ingest_batch: int = Field(default=50, ge=1, le=1000)

    email_provider: Annotated[tuple[str, ...], NoDecode] = ("outbox",)
    sms_provider: Annotated[tuple[str, ...], NoDecode] = ("outbox",)
    outbox_dir: Path = Path("outbox")
    templates_dir: Path | None = None
    mandrill_templates: Literal["local", "mandrill"] = "local"
    # The domain after the @ of each Message-ID we write (SMTP, outbox); empty: the sender's domain.
    message_id_domain: str = Field(default="", pattern=r"^([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)?$")

    auto_migrate: bool = True
    task_events: bool = True  # Celery task events, what Flower shows; off saves CPU per task
    task_sent_events: bool = False  # Flower also shows tasks still waiting in the queue
    worker_pool: str = "threads"
    # Sends wait on providers (100-300 ms): bench/io_bound.py picks 32-64 threads on two cores.
    worker_concurrency: int = Field(default=32, ge=1, le=1000)

    sweep_interval: Seconds = 30.0
    sweep_enabled: bool = True
    stuck_after: Seconds = 120.0
    sending_timeout: Seconds = 600.0
    retention_days: float = Field(default=7.0, ge=0, le=3650, allow_inf_nan=False)

    # What a provider timeout after the request went out means: retry (may duplicate) or unknown
    # (an operator decides; never duplicates).
    on_maybe_delivered: Literal["retry", "unknown"] = "retry"
    max_attempts: int = Field(default=8, ge=1)
    max_age: Seconds = 86400.0
    retry_base: Seconds = 2.0  # first retry after about this many seconds
    retry_cap: Seconds = 900.0
    # Longer waits are scheduled via the ledger.
    short_retry_limit: float = Field(default=30.0, ge=0, le=YEAR, allow_inf_nan=False)
    # A provider refusing our key or account parks its rows this long, spending no attempts.
    misconfigured_backoff: Seconds = 900.0

    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: no metrics endpoint
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, so Prometheus can reach it
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    redis_url: str = ""  # for the shared rate limiter; empty: limits off
    rate_limits: str = ""  # e.g. "mandrill=50/s,twilio=10/s,sms-sender=1/s"

    flower_user: str = ""
    # Secrets are SecretStr: their repr, str and JSON show ********** (Flower, `celery inspect conf`,
    # tracebacks); only the code that hands one to its service calls get_secret_value().
    flower_password: SecretStr = SecretStr("")

    # Delivery receipts and suppression (issue 15). The URL the providers were given for webhooks:
    # signatures are computed over it, so it must be exactly what Mandrill and Twilio hold.
    public_url: str = ""
    webhooks_host: str = "127.0.0.1"
    webhooks_port: int = Field(default=8025, ge=1, le=65535)
    # Keys the HMAC that is a recipient's only form on the suppression list and in receipts.
    suppression_key: SecretStr = SecretStr("")
    suppression: Literal["enforce", "record", "off"] = "enforce"
    status_events: bool = False  # publish events.NotificationStatusChanged on each final status
    # How long a receipt whose message id the ledger does not know yet waits for the send's answer
    # (it can arrive first); then the sweeper counts and drops it. At least ten minutes.
    receipt_wait: float = Field(default=3600.0, ge=600, le=YEAR, allow_inf_nan=False)
    mandrill_webhook_key: SecretStr = Field(default=SecretStr(""), alias="MANDRILL_WEBHOOK_KEY")

    # Connections each HTTP provider (Mandrill, Twilio) opens at most, all kept alive between sends;
    # a send beyond them waits for a free one. Sized like the worker's default thread pool.
    http_max_connections: int = Field(default=32, ge=1, le=1000)

    mandrill_api_key: SecretStr = Field(default=SecretStr(""), alias="MANDRILL_API_KEY")
    mandrill_base_url: str = Field(default="https://mandrillapp.com/api/1.0", alias="MANDRILL_BASE_URL")
    mandrill_timeout: Seconds = Field(default=10.0, alias="MANDRILL_TIMEOUT")

    smtp_host: str = Field(default="localhost", alias="SMTP_HOST")
    smtp_port: int = Field(default=587, ge=1, le=65535, alias="SMTP_PORT")
    smtp_username: str = Field(default="", alias="SMTP_USERNAME")
    smtp_password: SecretStr = Field(default=SecretStr(""), alias="SMTP_PASSWORD")
    smtp_starttls: bool = Field(default=True, alias="SMTP_STARTTLS")
    smtp_ssl: bool = Field(default=False, alias="SMTP_SSL")
    smtp_timeout: Seconds = Field(default=10.0, alias="SMTP_TIMEOUT")

    twilio_account_sid: str = Field(default="", alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: SecretStr = Field(default=SecretStr(""), alias="TWILIO_AUTH_TOKEN")
    twilio_base_url: str = Field(default="https://api.twilio.com", alias="TWILIO_BASE_URL")
    twilio_timeout: Seconds = Field(default=10.0, alias="TWILIO_TIMEOUT")

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        if isinstance(value, str):
            name = value.strip().upper()
            if name not in logging.getLevelNamesMapping():
                raise ValueError(
                    f"unknown log level {value!r}; choose from DEBUG, INFO, WARNING, ERROR, CRITICAL"
                )
            return name
        return value

    @field_validator("email_provider", mode="before")
    @classmethod
    def _email_chain(cls, value: object) -> tuple[str, ...]:
        return _provider_chain(value, EMAIL_PROVIDERS, "NOTIFY_EMAIL_PROVIDER")

    @field_validator("sms_provider", mode="before")
    @classmethod
    def _sms_chain(cls, value: object) -> tuple[str, ...]:
        return _provider_chain(value, SMS_PROVIDERS, "NOTIFY_SMS_PROVIDER")

    @field_validator("event_routing_keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def resolved_database_url(self) -> str:
        url = self.database_url or f"sqlite:///{Path('notify.db').resolve()}"
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        elif url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url[len("postgres://") :]
        return url

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url or self.broker_url.startswith("filesystem://")

    def secret_values(self) -> tuple[str, ...]:
        """Every secret this process holds, for scrubbing text that might quote one."""
        values = [
            secret.get_secret_value()
            for secret in (
                self.flower_password,
                self.mandrill_api_key,
                self.smtp_password,
                self.twilio_auth_token,
                self.mandrill_webhook_key,
                self.suppression_key,
            )
        ]
        for name in URL_FIELDS:
            try:
                values.append(urlsplit(getattr(self, name)).password or "")
            except ValueError:
                values.append(getattr(self, name))  # unparseable: the whole value may hold one
        # Very short values would blank out ordinary words; they are no secret worth the name.
        return tuple(sorted({v for v in values if len(v) >= 4}, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """``text`` with every secret of these settings replaced by ``***``."""
        return scrub(text, self.secret_values())

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The URLs are plain strings (Celery and SQLAlchemy take them so) but may carry passwords.
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name in URL_FIELDS and isinstance(value, str) else value)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; a bad value becomes a ConfigurationError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = ".".join(str(part) for part in error["loc"])
            env = (
                loc.upper()
                if loc.isupper() or loc.startswith(("MANDRILL", "SMTP", "TWILIO"))
                else ("NOTIFY_" + loc.upper())
            )
            message = " ".join(str(error["msg"]).removeprefix("Value error, ").split())
            problems.append(f"{env}: {message}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
    except SettingsError as exc:
        raise ConfigurationError(f"invalid configuration: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
