"""Delivered notifications per second through a real worker, against two Celery ceilings, per broker.

For each broker, each repetition runs, in this order and on the same pool and concurrency:
the 1-hop ceiling (no-op tasks published by this process), the same-shape ceiling (the run's own
raw VtEvents on a topic exchange, each turned into one no-op task by a consumer bootstep: a
notification's two hops with no work of ours, ``bench/noop_app.py``), and the notify worker (the
same events on the bus, local Mandrill and Twilio servers answering at once, ledger on a throwaway
PostgreSQL database). Every clock runs from the first publish to the last task finished (for the
notify worker: the last notification at its provider). It prints the three rates, our rate as a
share of each ceiling, and the median of each over the runs.

    PYTHONPATH=. .venv/bin/python bench/throughput.py [--broker rabbitmq|redis|both] [--quick]
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("-n", "--count", type=int, default=3000, help="events per run (default 3,000)")
    parser.add_argument("--pool", default="threads", help="worker pool for every worker (default threads)")
    parser.add_argument("--concurrency", type=int, default=32, help="pool size for every worker (default 32)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per broker (default 3; medians printed)")
    parser.add_argument("--quick", action="store_true", help="200 events, one run: proves the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.repeat = 200, 1
    return args


def line(result: Result) -> str:
    unit = {"notify": "notifications/s", "same-shape": "events/s"}.get(result.label.split()[0], "tasks/s")
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
        shaped: list[float] = []
        rates: list[float] = []
        ratios: list[float] = []
        shaped_ratios: list[float] = []
        cpu_ratios: list[float] = []
        rss: list[float] = []
        for run in range(1, args.repeat + 1):
            tag = f"[{broker} run {run}]"
            ceiling = measure_noop(broker, args.pool, args.concurrency, args.count)
            print(f"{tag} {line(ceiling)}  {load()}", flush=True)
            same = measure_noop(broker, args.pool, args.concurrency, args.count, shape="bus")
            print(f"{tag} {line(same)}  {load()}", flush=True)
            result = measure_notify(broker, args.ledger, args.pool, args.concurrency, args.count)
            print(f"{tag} {line(result)}  {load()}", flush=True)
            print(f"{tag} ledger: {result.ledger}", flush=True)
            ratio, shaped_ratio = result.rate / ceiling.rate, result.rate / same.rate
            # On a shared machine the wall-clock ratio moves with the neighbours' load; the worker's
            # own CPU per item against the same-shape ceiling's does not.
            cpu_ratio = same.cpu_ms_per_item / result.cpu_ms_per_item if result.cpu_ms_per_item else 0.0
            print(
                f"{tag} ratio {shaped_ratio:.1%} of the same-shape ceiling, {ratio:.1%} of the no-op "
                f"ceiling (same-shape / no-op {same.rate / ceiling.rate:.1%}); by CPU per item "
                f"{cpu_ratio:.1%} of the same-shape ceiling",
                flush=True,
            )
            ceilings.append(ceiling.rate)
            shaped.append(same.rate)
            rates.append(result.rate)
            ratios.append(ratio * 100)
            shaped_ratios.append(shaped_ratio * 100)
            cpu_ratios.append(cpu_ratio * 100)
            rss.append(result.peak_rss_mb)
        summary.append(
            f"{broker:<9} {args.pool} -c {args.concurrency:<4} no-op {rig.spread(ceilings)} tasks/s | "
            f"same-shape {rig.spread(shaped)} events/s | notify {rig.spread(rates)} notifications/s | "
            f"ratio to same-shape {statistics.median(shaped_ratios):.1f}% "
            f"({min(shaped_ratios):.1f}-{max(shaped_ratios):.1f}) | ratio to no-op "
            f"{statistics.median(ratios):.1f}% ({min(ratios):.1f}-{max(ratios):.1f}) | by CPU to same-shape "
            f"{statistics.median(cpu_ratios):.1f}% ({min(cpu_ratios):.1f}-{max(cpu_ratios):.1f}) | "
            f"peak RSS {max(rss):.0f} MB"
        )
    print(f"summary (median (min-max) over runs; {load()} at the end):")
    for entry in summary:
        print(f"  {entry}")
    return 0


def load() -> str:
    """The machine is shared: every figure is printed beside the load it was measured under."""
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


if __name__ == "__main__":
    sys.exit(main())
