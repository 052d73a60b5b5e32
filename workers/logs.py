"""Structured logging: JSON lines (or console when a terminal is attached), personal data masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"(?<![\w])\+?\d[\d ().-]{6,}\d(?![\w])")


def mask(text: str) -> str:
    """Replace anything that looks like an email address or a phone number."""
    text = EMAIL.sub("<email>", text)
    return PHONE.sub(lambda m: "<phone>" if sum(c.isdigit() for c in m.group()) >= 8 else m.group(), text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    return value


# Ids are not personal by contract, and masking digit runs inside a UUID makes it unsearchable.
_IDS = frozenset({"notification_id", "event_id", "core_id", "provider_message_id", "task_id", "timestamp"})


def redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: ids pass, addresses and numbers never reach the log (exceptions too)."""
    for key, value in list(event_dict.items()):
        if key in _IDS:
            continue
        event_dict[key] = _redact_value(value)
    return event_dict


# Celery log lines that carry a task message's arguments or whole body (the raw event, for
# ``notifications.accept``, or anything a producer sent): their placeholders are blanked out.
# First lines of the templates in celery.concurrency.base and celery.worker.consumer.consumer.
CELERY_BODY_TEMPLATES = (
    "TaskPool: Apply",
    "Received unregistered task",
    "Received invalid task message",
    "Can't decode message body",
    "Received and deleted unknown message",
)
_PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[-#0 +]*\d*(?:\.\d+)?[sradifxXeEgG]")


class HideMessageBodies(logging.Filter):
    """Keeps Celery from printing task arguments or message bodies, at any level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.lstrip().startswith(CELERY_BODY_TEMPLATES):
            first_line = record.msg.strip().splitlines()[0]
            record.msg = _PLACEHOLDER.sub("<hidden>", first_line.replace("%%", "%"))
            record.args = None
        return True


def configure(*, level: str | int = "INFO", fmt: str = "auto") -> None:
    """Route structlog and the standard library (Celery, kombu) through one masked renderer."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(HideMessageBodies())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # Celery's per-task "received" and "succeeded" lines repeat what our own deliver.* lines and
    # Flower already say, and cost a tenth of the worker's CPU at load; keep them for DEBUG only.
    quiet = logging.WARNING if root.level > logging.DEBUG else logging.NOTSET
    for name in ("celery.worker.strategy", "celery.app.trace"):
        logging.getLogger(name).setLevel(quiet)
