"""The ledger's PostgreSQL fast paths against its plain path: writes per second and CPU per notification.

Each run takes a fresh PostgreSQL database and a ``Ledger`` with one set of ``FastPath``s, accepts
N events in batches (as the bus consumer does), then claims and records each as sent from several
threads (as a threaded worker does). Variants run interleaved, so a noisy neighbour spreads over
all of them; every run is printed, then the median per variant. A fast path stays only while its
figure beats the plain path's.

    PYTHONPATH=. .venv/bin/python bench/ledger_paths.py [-n 2000] [--threads 8] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rig
from workers.events import ParsedEvent, parse_event_dict
from workers.ledger import FastPath, Ledger, make_engine
from workers.ledger.migrate import upgrade
from workers.messages import Receipt

BATCH = 50
VARIANTS: dict[str, frozenset[FastPath]] = {
    "plain": frozenset(),
    "all fast paths": frozenset(FastPath),
    **{f"only {path.value}": frozenset({path}) for path in FastPath},
}


@dataclass(frozen=True, slots=True)
class Run:
    variant: str
    accept_rate: float  # rows/s through accept_many
    deliver_rate: float  # claim + record_sent pairs/s across the threads
    accept_cpu_us: float  # this process's CPU per accepted row
    deliver_cpu_us: float  # this process's CPU per claim + record_sent


def events(count: int) -> list[ParsedEvent]:
    """Alternating BasicEmail and SMS events, each under a fresh id."""
    made = []
    for n in range(count):
        core = {"id": str(uuid.uuid4()), "name": "bench", "timestamp": "Wed, 25 Nov 2026 10:00:00 +0000"}
        if n % 2:
            data = {
                "@type": "type.googleapis.com/events.SMSNotification",
                "fromNumber": "+14155550100",
                "toNumber": "+14155550199",
                "message": f"Your code is {n:06d}",
            }
        else:
            data = {
                "@type": "type.googleapis.com/events.BasicEmail",
                "fromAddress": "sender@example.com",
                "toAddress": "person@example.org",
                "subject": f"Hello {n}",
                "body": "Plain body " * 20,
            }
        made.append(parse_event_dict({"core": core, "data": data}))
    return made


def _in_threads(threads: int, items: list[str], work: Callable[[str], None]) -> None:
    lock = threading.Lock()
    queue: Iterator[str] = iter(items)

    def loop() -> None:
        while True:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            work(item)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def run_once(variant: str, fast_paths: Collection[FastPath], count: int, threads: int, folder: Path) -> Run:
    batch = events(count)
    with rig.ledger_url("postgres", folder) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            ledger = Ledger(engine, fast_paths=fast_paths)
            cpu, start = time.process_time(), time.perf_counter()
            for first in range(0, count, BATCH):
                ledger.accept_many(batch[first : first + BATCH], queued=True)
            accepted, accept_cpu = time.perf_counter(), time.process_time()

            def deliver(notification_id: str) -> None:
                claim = ledger.claim(notification_id)
                if claim is None or not ledger.record_sent(claim, Receipt("bench", notification_id)).moved:
                    raise RuntimeError(f"{variant}: {notification_id} was not delivered")

            _in_threads(threads, [event.notification_id for event in batch], deliver)
            delivered, deliver_cpu = time.perf_counter(), time.process_time()
        finally:
            engine.dispose()
    return Run(
        variant,
        accept_rate=count / (accepted - start),
        deliver_rate=count / (delivered - accepted),
        accept_cpu_us=(accept_cpu - cpu) * 1e6 / count,
        deliver_cpu_us=(deliver_cpu - accept_cpu) * 1e6 / count,
    )


def line(variant: str, runs: list[Run]) -> str:
    """The median of each figure over ``runs`` (one run: its figures)."""

    def median(figure: Callable[[Run], float]) -> float:
        return statistics.median(figure(run) for run in runs)

    return (
        f"{variant:<16} accept {median(lambda r: r.accept_rate):7,.0f} rows/s "
        f"{median(lambda r: r.accept_cpu_us):5.0f} us cpu/row   "
        f"claim+sent {median(lambda r: r.deliver_rate):6,.0f} /s "
        f"{median(lambda r: r.deliver_cpu_us):5.0f} us cpu/notification"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=2000, help="notifications per run (default 2,000)")
    parser.add_argument("--threads", type=int, default=8, help="delivering threads (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="200 notifications, one run: proves the script works"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.repeat = 200, 1
    print(
        f"ledger paths: {rig.describe_machine()}; {args.count} notifications per run, {args.threads} threads"
    )
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as folder:
        for repetition in range(1, args.repeat + 1):
            for variant, fast_paths in VARIANTS.items():
                run = run_once(variant, fast_paths, args.count, args.threads, Path(folder))
                runs.append(run)
                print(f"run {repetition} {line(variant, [run])}", flush=True)
    print("\nmedians")
    for variant in VARIANTS:
        print("      " + line(variant, [run for run in runs if run.variant == variant]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
