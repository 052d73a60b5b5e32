"""Where the worker's CPU goes: py-spy samples a real worker under a burst, grouped by library and step.

Samples only threads holding the GIL (``--gil``), so waiting on the database or a socket is not
counted: what is left is the Python work per notification. Prints the share of samples per library
(attributed to the innermost frame that belongs to one) and per step of our own code.

Also prints the worker's CPU per notification over the burst (user + system time of the worker's
process tree, as ``bench.measure`` meters it) and the load average beside it.

    PYTHONPATH=. .venv/bin/python bench/profile_worker.py [-n 1000] [--outbox] [--out profile.txt] [--quick]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import notify_worker
from bench.workload import plan

LIBRARIES = {
    "logging (stdlib, structlog, masking)": ("logging/__init__", "structlog/", "workers/logs.py"),
    "sqlalchemy": ("sqlalchemy/",),
    "psycopg": ("psycopg/",),
    "amqp / kombu / redis client": ("amqp/", "kombu/", "redis/"),
    "celery": ("celery/", "billiard/"),
    "httpx / httpcore": ("httpx/", "httpcore/"),
    "twilio sdk": ("twilio/",),
    "rendering": ("workers/rendering/",),
    "event decoding and validation": ("workers/events/",),
    "protobuf": ("protobuf/",),
    "json": ("json/",),
    # Without its own row the stdlib's MIME work (outbox, SMTP) was counted under celery, the
    # innermost library frame above it.
    "email (stdlib MIME)": ("(email/",),
    # Last, so the rows above claim their own modules first; without it our code counted as celery.
    "our own code (workers/, the rest)": ("workers/",),
}
STEPS = {
    "ingest: decode + validate": "parse_event (",
    "ingest: ledger.accept": "Ledger.accept (",
    "ingest: enqueue deliver task": "enqueue_delivery (",
    "ingest: ledger.mark_queued": "Ledger.mark_queued (",
    "deliver: ledger.claim": "Ledger.claim (",
    "deliver: compose (render)": "Composer.",
    "deliver: provider send": "_send (workers/dispatch.py",
    "deliver: ledger.record_sent": "Ledger.record_sent (",
    "logging": "Logger.",
}


def summarize(path: Path) -> list[str]:
    total = 0
    libraries: collections.Counter[str] = collections.Counter()
    steps: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for frame in reversed(frames):
            group = next((g for g, marks in LIBRARIES.items() if any(m in frame for m in marks)), None)
            if group:
                libraries[group] += count
                break
        else:
            libraries["other"] += count
        for step, mark in STEPS.items():
            if any(mark in frame for frame in frames):
                steps[step] += count
    lines = [f"samples holding the GIL: {total}", "by library (innermost frame):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in libraries.most_common()]
    lines.append("by step (inclusive; steps overlap where one calls another):")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in steps.most_common()]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["rabbitmq", "redis"], default="rabbitmq")
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("-n", "--count", type=int, default=1000)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("worker-profile.txt"), help="raw py-spy samples")
    parser.add_argument(
        "--outbox", action="store_true", help="outbox providers (files) instead of the local servers"
    )
    parser.add_argument("--quick", action="store_true", help="100 events")
    args = parser.parse_args(argv)
    if args.quick:
        args.count = 100
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with notify_worker(args.broker, args.ledger, args.pool, args.concurrency, outbox=args.outbox) as run:
        recorder = subprocess.Popen(
            [spy, "record", "-p", str(run.worker.pid), "--subprocesses", "--gil", "--nonblocking",
             "-r", "200", "-f", "raw", "-o", str(args.out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)
        cpu_before = run.meter.cpu_seconds()
        seconds = run.send(plan(args.count, seed=21), timeout=max(120.0, args.count / 5))
        cpu_ms = (run.meter.cpu_seconds() - cpu_before) * 1000 / args.count
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
    destination = "outbox" if args.outbox else "local servers"
    print(f"profile: {args.count} notifications in {seconds:.1f} s ({destination}, ledger {args.ledger})")
    print(
        f"worker CPU {cpu_ms:.2f} ms/notification (under py-spy sampling); "
        f"load average {os.getloadavg()[0]:.2f}; raw samples in {args.out}"
    )
    for line in summarize(args.out):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
