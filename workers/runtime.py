"""Assembles the process-wide collaborators (ledger, templates, providers, dispatcher) from settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Engine

from workers.compose import Composer
from workers.dispatch import Announcer, Dispatcher, Enqueue, Observer
from workers.ledger import Ledger, make_engine
from workers.ledger.keys import SUPPRESSION_KEY, load_key
from workers.ledger.migrate import upgrade
from workers.ledger.receipts import ReceiptBook
from workers.ledger.suppressions import SuppressionCheck, Suppressions
from workers.providers.registry import build_email_provider, build_sms_provider
from workers.ratelimit import RedisRateLimiter, WaitListener, build_limiter
from workers.receipts import RecipientKeys
from workers.rendering import TemplateStore, default_templates_dir, mention_template_data
from workers.retry import RetryPolicy
from workers.settings import Settings


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: Engine
    ledger: Ledger
    templates: TemplateStore
    dispatcher: Dispatcher
    limiter: RedisRateLimiter | None = None

    def close(self) -> None:
        self.dispatcher.email.close()
        self.dispatcher.sms.close()
        if self.limiter is not None:
            self.limiter.close()
        self.engine.dispose()


def template_store(settings: Settings) -> TemplateStore:
    return TemplateStore(settings.templates_dir or default_templates_dir())


def ledger_for(
    settings: Settings, *, migrate: bool | None = None, keys: RecipientKeys | None = None
) -> tuple[Engine, Ledger]:
    engine = make_engine(settings.resolved_database_url)
    if settings.auto_migrate if migrate is None else migrate:
        upgrade(engine)
    return engine, Ledger(engine, recipient_keys=keys)


def recipient_keys(settings: Settings) -> RecipientKeys:
    """Recipients' hashes under ``NOTIFY_SUPPRESSION_KEY``, else the key kept in the state dir."""
    return RecipientKeys(
        lambda: load_key(SUPPRESSION_KEY, settings.suppression_key.get_secret_value(), settings.state_dir)
    )


def build_runtime(
    settings: Settings,
    *,
    enqueue: Enqueue,
    migrate: bool | None = None,
    observer: Observer | None = None,
    announcer: Announcer | None = None,
) -> Runtime:
    # The observer also hears the rate limiter's refusals when it can (the Prometheus one does).
    limiter = build_limiter(settings, listener=observer if isinstance(observer, WaitListener) else None)
    keys = recipient_keys(settings)
    # The ledger keys each row at intake with the very hasher the list check uses, so the claim
    # answers the check. With the list off nothing is asked, so nothing is keyed (nor the key fetched).
    engine, ledger = ledger_for(
        settings, migrate=migrate, keys=None if settings.suppression == "off" else keys
    )
    templates = template_store(settings)
    composer = Composer(
        templates,
        mention_template_data,
        provider_side_templates=settings.mandrill_templates == "mandrill",
    )
    dispatcher = Dispatcher(
        ledger,
        composer=composer,
        email=build_email_provider(settings, limiter=limiter),
        sms=build_sms_provider(settings, limiter=limiter),
        policy=RetryPolicy.from_settings(settings),
        enqueue=enqueue,
        on_maybe_delivered=settings.on_maybe_delivered,
        misconfigured_backoff=settings.misconfigured_backoff,
        observer=observer,
        suppression=SuppressionCheck(Suppressions(engine), keys),
        suppression_mode=settings.suppression,
        receipts=ReceiptBook(engine),
        receipt_wait=settings.receipt_wait,
        announcer=announcer if settings.status_events else None,
    )
    return Runtime(settings, engine, ledger, templates, dispatcher, limiter)


class LazyRuntime:
    """Builds the runtime on first use in each process (after a prefork fork, never before)."""

    def __init__(
        self,
        settings: Settings,
        enqueue: Enqueue,
        *,
        observer: Observer | None = None,
        announcer: Announcer | None = None,
    ) -> None:
        self._settings = settings
        self._enqueue = enqueue
        self._announcer = announcer
        self._observer = observer  # one per process, outliving runtimes: metrics register once
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None

    def get(self) -> Runtime:
        runtime = self._runtime
        if runtime is None:
            with self._lock:
                if self._runtime is None:
                    self._runtime = build_runtime(
                        self._settings,
                        enqueue=self._enqueue,
                        observer=self._observer,
                        announcer=self._announcer,
                    )
                runtime = self._runtime
        return runtime

    def reset(self) -> None:
        with self._lock:
            if self._runtime is not None:
                self._runtime.close()
            self._runtime = None
