"""One worker's memory over 10,000 notifications: RSS after each step, so growth shows as a trend.

Starts a real ``notify worker`` (threads pool, PostgreSQL ledger, the local Mandrill and Twilio
servers or ``--outbox``), publishes ``--count`` mixed events in steps of ``--step`` and prints the
worker's RSS (its process tree, as ``bench.rig.Meter`` reads it) and CPU per notification after each
step, with the load average. Issue 17's target: under 150 MB after 10,000. Prints; asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/memory.py [--count 10000] [--step 1000] [--outbox] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rig
from bench.measure import notify_worker
from bench.workload import plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["rabbitmq", "redis"], default="rabbitmq")
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=1_000)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--outbox", action="store_true", help="outbox providers instead of the local servers")
    parser.add_argument("--quick", action="store_true", help="200 events in steps of 100")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.step = 200, 100
    print(
        f"memory: {rig.describe_machine()}; ledger {args.ledger}, {args.pool} -c {args.concurrency}",
        flush=True,
    )
    with notify_worker(args.broker, args.ledger, args.pool, args.concurrency, outbox=args.outbox) as run:
        run.meter.sample()
        print(f"after warm-up: RSS {run.meter.describe()}", flush=True)
        done = 0
        while done < args.count:
            size = min(args.step, args.count - done)
            cpu_before = run.meter.cpu_seconds()
            run.send(plan(size, seed=100 + done), timeout=max(120.0, size / 5))
            cpu_ms = (run.meter.cpu_seconds() - cpu_before) * 1000 / size
            done += size
            run.meter.reset()
            run.meter.sample()
            print(
                f"after {done:>6,}: RSS {run.meter.describe()}  cpu {cpu_ms:.2f} ms/notification"
                f"  load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
