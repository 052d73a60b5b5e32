"""Receipts per second through the webhook receiver: signed Mandrill batches posted to `notify webhooks`.

    PYTHONPATH=. .venv/bin/python bench/webhooks.py [--batches N] [--batch-size N] [--clients N]
        [--sink memory|celery] [--quick]

Starts the receiver (the real Starlette app under uvicorn, one process, as `notify webhooks` runs
it) in a child process on a free port, then posts ``--batches`` signed ``mandrill_events`` batches
of ``--batch-size`` delivered/hard_bounce events each from ``--clients`` keep-alive clients, and
prints receipts per second, requests per second and request latency percentiles. Every request
must be answered 200 with all its receipts counted; the figures are printed, never judged.

``--sink memory`` (default) hands receipts to an in-memory sink in the receiver: it measures
HTTP, form parsing, the signature check, event parsing and hashing. ``--sink celery`` publishes
each batch as the ``notifications.receipt`` task with publisher confirms on the broker of
``NOTIFY_BROKER_URL`` (the embedded one when unset); with a worker that has the receipt task
running on that broker, the receipts go on into the ledger.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

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


def build_batches(count: int, size: int, url: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    """Signed forms of ``count`` batches; one event in ten a hard bounce (hashes a recipient)."""
    batches = []
    for b in range(count):
        events = []
        for i in range(size):
            message_id = f"{b:016x}{i:016x}"
            kind = "hard_bounce" if i % 10 == 0 else "delivered"
            msg = {"_id": message_id, "email": f"user{i}@example.com", "state": "sent", "tags": []}
            events.append({"event": kind, "_id": message_id, "ts": 1_760_000_000 + i, "msg": msg})
        form = {EVENTS_FIELD: json.dumps(events)}
        headers = {SIGNATURE_HEADER: signature(KEY.encode(), url, form.items())}
        batches.append((form, headers))
    return batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=100, help="events per POST (Mandrill: up to 1000)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sink", choices=["memory", "celery"], default="memory")
    parser.add_argument("--quick", action="store_true", help="40 batches, for a smoke run")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_child(args.serve, args.sink)
        return 0
    if args.quick:
        args.batches = 40

    with listen("127.0.0.1", 0) as probe:
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "NOTIFY_LOG_LEVEL": "WARNING",
    }
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--sink", args.sink],
        env=env,
        stdout=subprocess.DEVNULL,
    )
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

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
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
    return 0 if counted == expected and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
