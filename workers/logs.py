"""Structured logging: JSON lines (or console when a terminal is attached), personal data masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from workers.settings import scrub

# Anything the intake accepts as an address (RFC 5322 dot-atom local part, IDN domain) and more:
# local part of atext, dots and any non-ASCII; domain labels of anything but ASCII punctuation
# (except "-" and "_") and whitespace, so every script's letters and marks count. The lookbehind
# makes a match start where the local part starts, never halfway (``o'brien``).
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]|[^\x00-\x7f\s]"
_LABEL = r"[^\s!-,./:-@\[-^`{-~]+"
EMAIL = re.compile(rf"(?<!{_LOCAL})(?:{_LOCAL})+@{_LABEL}(?:\.{_LABEL})+")
PHONE = re.compile(r"(?<![\w])\+?\d[\d ().-]{6,}\d(?![\w])")
# Ids are never personal, and a digit run inside one is no phone number: UUIDs (our notification
# ids, Celery task ids), long hex ids, Twilio SIDs (two capitals and 32 hex digits).
IDS = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[A-Z]{2}[0-9a-fA-F]{32}|[0-9a-fA-F]{16,})(?![0-9A-Za-z])"
)
# While phones are masked, each id stands in as one private-use character: not a digit, not a
# word character, so no phone match can start, end or run inside it.
_HOLD = 0xE000
_HOLD_SLOTS = 0xF8FF - _HOLD + 1
_HELD = re.compile("[\ue000-\uf8ff]")
# The gate for the id and phone passes: one C-level scan instead of a Python loop per character.
# PHONE matches only \d digits, so a text without one holds no phone number to mask.
_DIGIT = re.compile(r"\d").search


def mask(text: str) -> str:
    """Replace anything that looks like an email address or a phone number; ids stay whole."""
    if "@" in text:  # most log strings hold none: skip the regex pass
        text = EMAIL.sub("<email>", text)
    held: list[str] = []

    def hold(match: re.Match[str]) -> str:
        if len(held) >= _HOLD_SLOTS:
            return match.group()  # no slot left; the id's digits then take their chances
        held.append(match.group())
        return chr(_HOLD + len(held) - 1)

    if _DIGIT(text):
        text = IDS.sub(hold, text)
        text = PHONE.sub(lambda m: "<phone>" if sum(c.isdigit() for c in m.group()) >= 8 else m.group(), text)
        if held:
            text = _HELD.sub(
                lambda m: held[i] if (i := ord(m.group()) - _HOLD) < len(held) else m.group(), text
            )
    return text


def _redact_value(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    if isinstance(value, str):
        return mask(scrub(value, secrets) if secrets else value)
    if isinstance(value, dict):
        return {k: _redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, secrets) for v in value)
    return value


# Ids are not personal by contract, and masking digit runs inside a UUID makes it unsearchable.
_IDS = frozenset({"notification_id", "event_id", "core_id", "provider_message_id", "task_id", "timestamp"})


class Redactor:
    """Last line of defence: ids pass, addresses, numbers and the settings' secrets never reach
    the log (exceptions too)."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self.secrets = secrets

    def __call__(
        self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            if key in _IDS:
                continue
            event_dict[key] = _redact_value(value, self.secrets)
        return event_dict


redact = Redactor()


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


def configure(*, level: str | int = "INFO", fmt: str = "auto", secrets: tuple[str, ...] = ()) -> None:
    """Route structlog and the standard library (Celery, kombu) through one masked renderer;
    ``secrets`` (the settings' passwords and keys) are blanked wherever they would appear."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redactor(secrets),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        # The level check first: a call below the level (the providers' debug lines, once per send)
        # then costs a comparison instead of the whole chain of processors.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Neither renderer prints where a call came from, nor which thread or process made it; without
    # these the standard library still walks the stack and asks for them on every record (and
    # ProcessorFormatter copies each record once more). The Logging HOWTO's "Optimization" section
    # names these switches; they took a line from 40 to 30 µs of CPU.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
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
    # So does httpx.Client's "HTTP Request: POST ..." line per provider call (about a tenth of a send's
    # client-side CPU, bench/providers.py), which our provider.* lines and the ledger already tell.
    # Alembic names each of its plugins at start-up (seven lines before every `notify webhooks` or
    # worker start); its migration lines ("Running upgrade ...") come from alembic.runtime.migration.
    quiet = logging.WARNING if root.level > logging.DEBUG else logging.NOTSET
    for name in ("celery.worker.strategy", "celery.app.trace", "httpx", "alembic.runtime.plugins"):
        logging.getLogger(name).setLevel(quiet)
