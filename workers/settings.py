"""Every knob, read once from the environment (NOTIFY_*, MANDRILL_*, SMTP_*, TWILIO_*)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from workers.errors import ConfigurationError

EMAIL_PROVIDERS = frozenset({"mandrill", "smtp", "outbox"})
SMS_PROVIDERS = frozenset({"twilio", "outbox"})


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
    task_queue: str = "notify"
    event_exchange: str = "events"
    event_queue: str = "notify.events"
    event_routing_keys: Annotated[tuple[str, ...], NoDecode] = (
        "events.BasicEmail",
        "events.SMSNotification",
        "events.MentionEmailGenerated",
    )
    consume_events: bool = True
    # Bus messages settled together (one ledger write); 1 settles each on its own.
    ingest_batch: int = Field(default=50, ge=1, le=1000)

    email_provider: Annotated[tuple[str, ...], NoDecode] = ("outbox",)
    sms_provider: Annotated[tuple[str, ...], NoDecode] = ("outbox",)
    outbox_dir: Path = Path("outbox")
    templates_dir: Path | None = None
    mandrill_templates: Literal["local", "mandrill"] = "local"

    auto_migrate: bool = True
    task_events: bool = True  # Celery task events, what Flower shows; off saves CPU per task
    task_sent_events: bool = False  # Flower also shows tasks still waiting in the queue
    worker_pool: str = "threads"
    # Sends wait on providers (100-300 ms): bench/io_bound.py picks 32-64 threads on two cores.
    worker_concurrency: int = Field(default=32, ge=1, le=1000)

    sweep_interval: float = Field(default=30.0, gt=0)
    sweep_enabled: bool = True
    stuck_after: float = Field(default=120.0, gt=0)
    sending_timeout: float = Field(default=600.0, gt=0)
    retention_days: float = Field(default=7.0, ge=0)

    # What a provider timeout after the request went out means: retry (may duplicate) or unknown
    # (an operator decides; never duplicates).
    on_maybe_delivered: Literal["retry", "unknown"] = "retry"
    max_attempts: int = Field(default=8, ge=1)
    max_age: float = Field(default=86400.0, gt=0)
    retry_base: float = Field(default=2.0, gt=0)  # first retry after about this many seconds
    retry_cap: float = Field(default=900.0, gt=0)
    short_retry_limit: float = Field(default=30.0, ge=0)  # longer waits are scheduled via the ledger
    # A provider refusing our key or account parks its rows this long, spending no attempts.
    misconfigured_backoff: float = Field(default=900.0, gt=0)

    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: no metrics endpoint
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, so Prometheus can reach it
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    redis_url: str = ""  # for the shared rate limiter; empty: limits off
    rate_limits: str = ""  # e.g. "mandrill=50/s,twilio=10/s,sms-sender=1/s"

    flower_user: str = ""
    flower_password: str = ""

    mandrill_api_key: str = Field(default="", alias="MANDRILL_API_KEY")
    mandrill_base_url: str = Field(default="https://mandrillapp.com/api/1.0", alias="MANDRILL_BASE_URL")
    mandrill_timeout: float = Field(default=10.0, gt=0, alias="MANDRILL_TIMEOUT")

    smtp_host: str = Field(default="localhost", alias="SMTP_HOST")
    smtp_port: int = Field(default=587, ge=1, le=65535, alias="SMTP_PORT")
    smtp_username: str = Field(default="", alias="SMTP_USERNAME")
    smtp_password: str = Field(default="", alias="SMTP_PASSWORD")
    smtp_starttls: bool = Field(default=True, alias="SMTP_STARTTLS")
    smtp_ssl: bool = Field(default=False, alias="SMTP_SSL")
    smtp_timeout: float = Field(default=10.0, gt=0, alias="SMTP_TIMEOUT")

    twilio_account_sid: str = Field(default="", alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: str = Field(default="", alias="TWILIO_AUTH_TOKEN")
    twilio_base_url: str = Field(default="https://api.twilio.com", alias="TWILIO_BASE_URL")
    twilio_timeout: float = Field(default=10.0, gt=0, alias="TWILIO_TIMEOUT")

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
            problems.append(f"{env}: {error['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
    except SettingsError as exc:
        raise ConfigurationError(f"invalid configuration: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
