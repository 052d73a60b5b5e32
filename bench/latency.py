"""Event-published to provider-received latency (p50, p95, p99) at a steady offered load.

Starts a real worker with local providers answering at once, measures its maximum rate with a burst
(unless ``--rate`` is given), then publishes at ``--load`` of that rate (80% by default, issue 17's
"real load") for ``--duration`` seconds, one event at a time on a fixed schedule. The latency
includes the bus consumer's batch window (``workers.ingest.BATCH_WINDOW_SECONDS``): the clock runs
from publish to the provider's receipt of the request. Each event carries its publish moment
(epoch ms) in the baggage entry ``bench-published-at-ms``; the local Mandrill and Twilio servers
stamp when they receive it.

    PYTHONPATH=. .venv/bin/python bench/latency.py [--broker rabbitmq|redis] [--load 0.8] [--rate R] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kombu import Producer

from bench import rig, services
from bench.measure import notify_worker
from bench.workload import plan
from workers.ingest import BATCH_WINDOW_SECONDS, declare_bus, event_exchange


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["rabbitmq", "redis"], default="rabbitmq")
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--rate", type=float, help="offered events/s (default: --load of the measured maximum)"
    )
    parser.add_argument(
        "--load", type=float, default=0.8, help="share of the measured maximum to offer (default 0.8)"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of steady load (default 20)")
    parser.add_argument("--calibrate", type=int, default=1000, help="burst size that measures the maximum")
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--quick", action="store_true", help="small burst, 3 s of load: proves the script works"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.calibrate, args.duration = 100, 3.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"latency: {rig.describe_machine()}; broker {args.broker}, ledger {args.ledger}, "
        f"{args.pool} -c {args.concurrency}",
        flush=True,
    )
    with notify_worker(args.broker, args.ledger, args.pool, args.concurrency) as run:
        rate = args.rate
        if rate is None:
            burst = plan(args.calibrate, seed=11)
            seconds = run.send(burst, timeout=max(120.0, args.calibrate / 5))
            maximum = args.calibrate / seconds
            rate = maximum * args.load
            print(
                f"maximum (burst of {args.calibrate}): {maximum:,.0f} notifications/s; "
                f"offering {args.load:.0%} of it",
                flush=True,
            )
        count = max(1, int(rate * args.duration))
        steady = plan(count, seed=12)
        print(f"offered load: {rate:,.1f} events/s for {args.duration:.0f} s ({count} events)", flush=True)
        run.meter.reset()
        published: dict[str, float] = {}
        with services.connection(run.settings) as conn:
            declare_bus(conn, run.settings)
            producer = Producer(conn.default_channel)
            exchange = event_exchange(run.settings)
            start = time.time() + 0.05
            for index, item in enumerate(steady):
                pause = start + index / rate - time.time()
                if pause > 0:
                    time.sleep(pause)
                now = time.time()
                producer.publish(
                    item.encode(now),
                    exchange=exchange,
                    routing_key=item.routing_key,
                    content_type=item.content_type,
                    content_encoding="binary",
                    delivery_mode=2,
                )
                published[item.notification_id] = now
            offered = count / (time.time() - start) if count > 1 else rate
        last = run.providers.wait_for(list(published), timeout=max(120.0, count / 5), alive=run.worker.alive)
        if last is None:
            print(f"error: not every event arrived; worker log tail:\n{run.worker.log_tail()}", flush=True)
            return 1
        run.meter.sample()
        arrivals = run.providers.arrivals()
        latencies = sorted((arrivals[i] - t) * 1000 for i, t in published.items())
        print(f"achieved offered rate: {offered:,.1f} events/s", flush=True)
        p50, p95, p99 = (rig.percentile(latencies, share) for share in (0.50, 0.95, 0.99))
        print(
            f"latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {latencies[-1]:.1f}"
            f"  (n={len(latencies)}; publish to provider receipt, the {BATCH_WINDOW_SECONDS * 1000:.0f} ms"
            " intake batch window included)",
            flush=True,
        )
        print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)
        print(f"peak RSS {run.meter.describe()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
