"""Receipts per second through the webhook receiver: signed Mandrill batches posted to `notify webhooks`.

    PYTHONPATH=. .venv/bin/python bench/webhooks.py [--batches N] [--batch-size N] [--clients N]
        [--sink memory|celery] [--quick]

Starts the receiver (the real Starlette app under uvicorn, one process, as `notify webhooks` runs
it) in a child process on a free port, then posts ``--batches`` signed ``mandrill_events`` batches
of ``--batch-size`` delivered/hard_bounce events each from ``--clients`` keep-alive clients, and
prints receipts per second, requests per second and request latency percentiles. Every request
must be answered 200 with all its receipts counted; the figures are printed, never judged.

``--sink memory`` (default) hands receipts to an in-memory sink in the receiver: it measures
HTTP, form parsing, the signature check, event parsing and hashing.

``--sink celery`` measures the whole way into the ledger, and starts what it needs itself: a fresh
ledger (``--ledger postgres``, a throwaway database, or ``sqlite``), seeded with one `sent` row per
message id the batches name; a `notify worker` (``--pool``, ``--concurrency``) on ``--broker``
(RabbitMQ, or the embedded one) with queues of its own; and the receiver on the same broker, which
publishes each batch as the ``notifications.receipt`` task with publisher confirms. The figure is
receipts recorded in the ledger per second: from the first POST until the ``receipts`` table holds
every one (the rows move `sent` -> `delivered` | `bounced`, one in ten bounces adds a suppression),
with the worker's CPU per receipt and the load average beside it.

    PYTHONPATH=. .venv/bin/python bench/webhooks.py --sink celery [--broker rabbitmq|embedded]
        [--ledger postgres|sqlite] [--pool threads] [--concurrency 8] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import func, insert, select

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rig
from bench.services import isolated_env, settings_for
from workers.ledger import make_engine
from workers.ledger.models import Notification, ReceiptRecord
from workers.providers.mandrill_webhooks import EVENTS_FIELD, SIGNATURE_HEADER, signature
from workers.webhooks import MemorySink, ReceiptSink, ReceiverConfig, listen, serve

KEY = "bench-webhook-key-0123456789"
SUPPRESSION_KEY = b"bench-suppression-key-0123456789"
PATH = "/webhooks/mandrill"


def serve_child(port: int, sink_name: str) -> None:
    """The receiver as the child process runs it: fixed keys, public URL = its own address."""
    sock = listen("127.0.0.1", port)
    config = ReceiverConfig(
        public_url=f"http://127.0.0.1:{port}",
        suppression_key=SUPPRESSION_KEY,
        mandrill_webhook_key=SecretStr(KEY),
    )
    sink: ReceiptSink
    if sink_name == "celery":
        from workers.celery_app import app
        from workers.webhooks import CelerySink

        sink = CelerySink(app)
    else:
        sink = MemorySink(keep=False)
    serve(config, sink, sock)


def mandrill_id(batch: int, index: int) -> str:
    """The Mandrill ``_id`` of event ``index`` of batch ``batch`` (the seeded rows carry the same)."""
    return f"{batch:016x}{index:016x}"


def build_batches(count: int, size: int, url: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    """Signed forms of ``count`` batches; one event in ten a hard bounce (hashes a recipient)."""
    batches = []
    for b in range(count):
        events = []
        for i in range(size):
            message_id = mandrill_id(b, i)
            kind = "hard_bounce" if i % 10 == 0 else "delivered"
            msg = {"_id": message_id, "email": f"user{i}@example.com", "state": "sent", "tags": []}
            events.append({"event": kind, "_id": message_id, "ts": 1_760_000_000 + i, "msg": msg})
        form = {EVENTS_FIELD: json.dumps(events)}
        headers = {SIGNATURE_HEADER: signature(KEY.encode(), url, form.items())}
        batches.append((form, headers))
    return batches


@dataclass
class LedgerRun:
    """The worker and ledger that ``--sink celery`` records into; ``env`` is for the receiver too."""

    env: dict[str, str]
    database_url: str
    worker: rig.Process

    def recorded(self) -> int:
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(ReceiptRecord)).scalar_one())
        finally:
            engine.dispose()


def seed_sent_rows(database_url: str, batches: int, size: int) -> None:
    """One `sent` Mandrill row per message id the batches name, so every receipt finds its row."""
    now = datetime.now(UTC)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            for b in range(batches):
                conn.execute(
                    insert(Notification),
                    [
                        {
                            "id": f"bench-{b}-{i}",
                            "channel": "email",
                            "event_type": "events.BasicEmail",
                            "status": "sent",
                            "attempts": 1,
                            "provider": "mandrill",
                            "provider_message_id": mandrill_id(b, i),
                            "meta": {},
                            "cycle_started_at": now,
                            "cycle_attempts_base": 0,
                            "created_at": now,
                            "updated_at": now,
                            "sent_at": now,
                        }
                        for i in range(size)
                    ],
                )
    finally:
        engine.dispose()


@contextlib.contextmanager
def ledger_run(args: argparse.Namespace, folder: Path) -> Iterator[LedgerRun]:
    """A fresh ledger, seeded; a `notify worker` on its own queues, ready; all removed afterwards."""
    with rig.ledger_url(args.ledger, folder) as database_url:
        # The worker logs at INFO, as in production (one `receipts.recorded` line per batch).
        key = SUPPRESSION_KEY.decode()
        if args.broker == "embedded":
            env = isolated_env(
                folder,
                database_url=database_url,
                NOTIFY_SWEEP_INTERVAL="30",
                NOTIFY_LOG_LEVEL="INFO",
                NOTIFY_SUPPRESSION_KEY=key,
            )
        else:
            env = rig.bench_env(
                folder, broker=args.broker, database_url=database_url, NOTIFY_SUPPRESSION_KEY=key
            )
        settings = settings_for(env)
        rig.prepare_ledger(settings)
        seed_sent_rows(database_url, args.batches, args.batch_size)
        worker = rig.Process(
            rig.notify_worker_argv(args.pool, args.concurrency), env, folder / "worker.log"
        ).start()
        try:
            deadline = time.monotonic() + 60
            while " ready." not in worker.log_tail(100_000):
                if not worker.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start:\n{worker.log_tail()}")
                time.sleep(0.2)
            yield LedgerRun(env, database_url, worker)
        finally:
            worker.stop()
            if args.broker != "embedded":
                rig.drop_broker_state(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=100, help="events per POST (Mandrill: up to 1000)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sink", choices=["memory", "celery"], default="memory")
    parser.add_argument(
        "--broker", choices=["rabbitmq", "embedded"], default="rabbitmq", help="--sink celery"
    )
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres", help="--sink celery")
    parser.add_argument("--pool", default="threads", help="the worker's pool, for --sink celery")
    parser.add_argument("--concurrency", type=int, default=8, help="the worker's, for --sink celery")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the ledger")
    parser.add_argument("--quick", action="store_true", help="40 batches, for a smoke run")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_child(args.serve, args.sink)
        return 0
    if args.quick:
        args.batches = 40
    if args.sink == "celery":
        with ledger_run(args, rig.scratch_dir("webhooks")) as run:
            return measure(args, run)
    return measure(args, None)


def measure(args: argparse.Namespace, run: LedgerRun | None) -> int:
    with listen("127.0.0.1", 0) as probe:
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {
        **(run.env if run is not None else os.environ),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "NOTIFY_LOG_LEVEL": "WARNING",
    }
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--sink", args.sink],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    load_before = os.getloadavg()[0]
    recorded_at: float | None = None
    worker_cpu = 0.0
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or child.poll() is not None:
                print("the receiver did not start", file=sys.stderr)
                return 1
            time.sleep(0.1)
        batches = build_batches(args.batches, args.batch_size, url + PATH)
        latencies: list[float] = []
        counted = 0
        failures = 0
        lock = threading.Lock()
        work = iter(batches)

        def client() -> None:
            nonlocal counted, failures
            with httpx.Client(base_url=url, timeout=60) as http:
                while True:
                    with lock:
                        item = next(work, None)
                    if item is None:
                        return
                    form, headers = item
                    started = time.perf_counter()
                    answer = http.post(PATH, data=form, headers=headers)
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed)
                        if answer.status_code == 200:
                            counted += answer.json()["receipts"]
                        else:
                            failures += 1

        meter = rig.Meter(run.worker.pid) if run is not None else None
        cpu_before = meter.cpu_seconds() if meter is not None else 0.0
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        if run is not None and meter is not None:
            # Into the ledger: until the receipts table holds every receipt the receiver took.
            give_up = time.monotonic() + args.timeout
            while run.recorded() < counted and time.monotonic() < give_up and run.worker.alive():
                time.sleep(0.1)
            recorded_at = time.perf_counter() - started
            worker_cpu = meter.cpu_seconds() - cpu_before
    finally:
        child.terminate()
        child.wait(timeout=20)

    expected = args.batches * args.batch_size
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    print(
        f"webhooks ({args.sink} sink): {args.batches} batches x {args.batch_size} events, "
        f"{args.clients} clients, one receiver process"
    )
    print(f"receipts stored: {counted}/{expected}; refused requests: {failures}")
    print(
        f"receipts/s: {counted / wall:,.0f}   requests/s: {len(latencies) / wall:,.1f}   wall: {wall:.2f} s"
    )
    print(f"request ms: p50 {cuts[49] * 1000:.1f}  p95 {cuts[94] * 1000:.1f}  p99 {cuts[98] * 1000:.1f}")
    ok = counted == expected and not failures
    if run is not None and recorded_at is not None:
        recorded = run.recorded()
        statuses = rig.status_counts(settings_for(run.env))
        print(
            f"into the ledger ({args.broker} broker, {args.ledger} ledger, worker {args.pool} "
            f"-c {args.concurrency}): receipts recorded {recorded}/{counted}; rows now "
            + ", ".join(f"{name} {count}" for name, count in sorted(statuses.items()))
        )
        print(
            f"receipts/s recorded in the ledger: {recorded / recorded_at:,.0f}   "
            f"(first POST to last row: {recorded_at:.2f} s)   "
            f"worker CPU ms per receipt: {worker_cpu * 1000 / max(recorded, 1):.3f}"
        )
        ok = ok and recorded == counted
    print(
        f"load average: {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end ({os.cpu_count()} cores)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
