"""`notify demo`: the whole loop in one folder: a worker subprocess, the example events, a report table.

The command line (``workers.cli``) parses ``--dir`` and hands this module what it needs: the settings
read after ``prepare`` pointed them at the folder, the folder of example events, and the function
that puts event files on the bus.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from workers.errors import InvalidEvent, NotifyError
from workers.events import load_event_file, parse_event
from workers.ledger import NotificationView, get_notification
from workers.messages import Status
from workers.preflight import open_ledger
from workers.settings import Settings, mask_url

# Long enough for a cold worker start on a busy two-core machine; the demo fails after it.
DEMO_TIMEOUT = 90.0
# Only a folder holding this file is wiped at start: `--dir ~` must never empty a home folder.
MARKER = ".notify-demo"
EVENT_SUFFIXES = frozenset({".json", ".pb"})

Line = Callable[[str], None]
Publish = Callable[[Sequence[Path]], list[str]]


class PickAnotherFolder(NotifyError):
    """Pass another ``--dir``: this folder exists and the demo did not make it, so it is left alone."""


def demo_environment(base: Path) -> dict[str, str]:
    """Settings that keep everything in ``base``: its own ledger, outbox and embedded broker state."""
    return {
        "NOTIFY_DATABASE_URL": f"sqlite:///{base / 'notify.db'}",
        "NOTIFY_OUTBOX_DIR": str(base / "outbox"),
        "NOTIFY_STATE_DIR": str(base / "state"),
        "NOTIFY_SWEEP_INTERVAL": "5",
        "NOTIFY_EMAIL_PROVIDER": "outbox",
        "NOTIFY_SMS_PROVIDER": "outbox",
    }


def prepare(base: Path) -> None:
    """Make ``base`` an empty demo folder and default the environment into it, before settings are read.

    The user's own settings win: `NOTIFY_BROKER_URL=amqp://... notify demo` runs on RabbitMQ.
    """
    if base.exists():
        if not (base / MARKER).exists():
            raise PickAnotherFolder(f"{base} exists and is not a demo folder; choose another")
        shutil.rmtree(base)
    base.mkdir(parents=True)
    (base / MARKER).touch()
    for key, value in demo_environment(base).items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True, slots=True)
class Example:
    """One example event file, named relative to the examples folder, and the type it declares."""

    source: str
    event_type: str


def event_files(examples: Path) -> list[Path]:
    """The event files (.json and .pb) under ``examples``, sorted."""
    return sorted(p for p in examples.rglob("*") if p.suffix in EVENT_SUFFIXES)


def read_examples(files: Sequence[Path], examples: Path) -> dict[str, Example]:
    """The example events by notification id; an invalid one under the id its rejection will carry."""
    found: dict[str, Example] = {}
    for path in files:
        event = load_event_file(path)
        source = str(path.relative_to(examples))
        try:
            parsed = parse_event(event.body, event.content_type, routing_key=event.routing_key)
            found[parsed.notification_id] = Example(source, parsed.event_type)
        except InvalidEvent as exc:
            found[exc.notification_id or "?"] = Example(source, exc.event_type or "?")
    return found


class Demo:
    """Runs the loop once: start a worker, publish the examples, wait for final rows, print the table."""

    def __init__(self, settings: Settings, *, publish: Publish, out: Line, err: Line) -> None:
        self.settings = settings
        self.publish = publish
        self.out = out
        self.err = err

    def run(self, base: Path, examples: Path) -> int:
        files = event_files(examples)
        if not files:
            self.err(f"notify demo: no example events under {examples}")
            return 1
        expected = read_examples(files, examples)
        settings = self.settings
        engine = open_ledger(settings, create=True)  # migrated; a bad NOTIFY_DATABASE_URL: one line
        broker = mask_url(settings.broker_url) or "embedded (filesystem)"
        self.out(f"notify demo: broker {broker}, ledger {mask_url(settings.resolved_database_url)}")
        log_path = base / "worker.log"
        with log_path.open("wb") as log_file:
            worker = subprocess.Popen(
                [sys.executable, "-m", "workers", "worker", "--concurrency", "4", "--loglevel", "INFO"],
                env=dict(os.environ) | {"NOTIFY_LOG_FORMAT": "json", "NOTIFY_AUTO_MIGRATE": "0"},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            try:
                self.out(f"started a worker (pid {worker.pid}); its log: {log_path}")
                for line in self.publish(files):
                    self.out("  " + line)
                rows = self._wait_terminal(engine, set(expected), worker)
            finally:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
        return self._report(expected, rows)

    def _wait_terminal(
        self, engine: Engine, ids: set[str], worker: subprocess.Popen[bytes]
    ) -> dict[str, NotificationView | None]:
        deadline = time.monotonic() + DEMO_TIMEOUT
        rows: dict[str, NotificationView | None] = {}
        while time.monotonic() < deadline:
            rows = {i: get_notification(engine, i) for i in ids}
            if all(row is not None and row.status.terminal for row in rows.values()):
                break
            if worker.poll() is not None:
                self.err(f"notify demo: the worker exited with code {worker.returncode}")
                break
            time.sleep(0.25)
        return rows

    def _report(self, expected: Mapping[str, Example], rows: Mapping[str, NotificationView | None]) -> int:
        out = self.out
        out("")
        out(f"{'EVENT FILE':<44} {'EVENT TYPE':<28} {'STATUS':<9} RESULT")
        ok = True
        for notification_id, example in sorted(expected.items(), key=lambda kv: kv[1].source):
            row = rows.get(notification_id)
            if row is None:
                ok = False
                out(f"{example.source:<44} {example.event_type:<28} {'missing':<9} never reached the ledger")
                continue
            if row.status is Status.SENT:
                result = f"{row.provider} -> {row.provider_message_id}"
            elif row.status is Status.REJECTED:
                result = f"rejected: {row.error}"
                ok = ok and example.source.startswith("invalid")
            else:
                result = row.error or "still in flight"
                ok = False
            event_type = row.event_type or example.event_type
            out(f"{example.source:<44} {event_type:<28} {row.status.value:<9} {result}")
        outbox = self.settings.outbox_dir.resolve()
        out("")
        out(f"outbox: {outbox}/email/*.eml and {outbox}/sms/*.json")
        # The exact command, URL included: run elsewhere without it, `notify deliveries list` would
        # look for a notify.db in that folder.
        url = shlex.quote(mask_url(self.settings.resolved_database_url))
        out(f"ledger: NOTIFY_DATABASE_URL={url} notify deliveries list")
        if not ok:
            self.err("notify demo: not every event reached the state it should")
        return 0 if ok else 1
