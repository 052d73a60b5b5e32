"""Delivered notifications per second through a real worker, against Celery's no-op ceiling, per broker.

For each broker, each repetition runs the no-op ceiling (a Celery task that does nothing, published
by this process and consumed by a worker with the same pool and concurrency) and then the notify
worker (N mixed events on the bus, local Mandrill and Twilio servers answering at once, ledger on
a throwaway PostgreSQL database). It prints both rates, their ratio and the worker's peak RSS.

    PYTHONPATH=. .venv/bin/python bench/throughput.py [--broker rabbitmq|redis|both] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rig
from bench.measure import Result, measure_noop, measure_notify


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["rabbitmq", "redis", "both"], default="both")
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("-n", "--count", type=int, default=5000, help="events per run (default 5,000)")
    parser.add_argument("--pool", default="threads", help="worker pool for both workers (default threads)")
    parser.add_argument("--concurrency", type=int, default=8, help="pool size for both workers (default 8)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per broker (default 2)")
    parser.add_argument("--quick", action="store_true", help="200 events, one run: proves the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.repeat = 200, 1
    return args


def line(result: Result) -> str:
    unit = "notifications/s" if result.label.startswith("notify") else "tasks/s"
    return (
        f"{result.label:<24} {result.rate:>8,.0f} {unit:<16} {result.count} in {result.seconds:6.2f} s"
        f"  cpu {result.cpu_ms_per_item:5.2f} ms/item  peak RSS {result.rss_detail}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    brokers = ["rabbitmq", "redis"] if args.broker == "both" else [args.broker]
    machine = rig.describe_machine()
    print(f"throughput: {machine}; {args.count} events per run, ledger {args.ledger}", flush=True)
    summary = []
    for broker in brokers:
        ceilings: list[float] = []
        rates: list[float] = []
        ratios: list[float] = []
        rss: list[float] = []
        for run in range(1, args.repeat + 1):
            ceiling = measure_noop(broker, args.pool, args.concurrency, args.count)
            print(f"[{broker} run {run}] {line(ceiling)}", flush=True)
            result = measure_notify(broker, args.ledger, args.pool, args.concurrency, args.count)
            print(f"[{broker} run {run}] {line(result)}", flush=True)
            print(f"[{broker} run {run}] ledger: {result.ledger}", flush=True)
            ratio = result.rate / ceiling.rate
            print(f"[{broker} run {run}] ratio {ratio:.1%} of the no-op ceiling", flush=True)
            ceilings.append(ceiling.rate)
            rates.append(result.rate)
            ratios.append(ratio * 100)
            rss.append(result.peak_rss_mb)
        summary.append(
            f"{broker:<9} {args.pool} -c {args.concurrency:<4} ceiling {rig.spread(ceilings)} tasks/s | "
            f"notify {rig.spread(rates)} notifications/s | ratio {statistics.median(ratios):.1f}% "
            f"({min(ratios):.1f}-{max(ratios):.1f}) | peak RSS {max(rss):.0f} MB"
        )
    print("summary (median (min-max) over runs):")
    for entry in summary:
        print(f"  {entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
