"""Delivered notifications per second through a real worker, against two Celery ceilings, per broker.

For each broker, each repetition runs, in this order and on the same pool and concurrency:
the 1-hop ceiling (no-op tasks published by this process), the same-shape ceiling (the run's own
raw VtEvents on a topic exchange, each turned into one no-op task by a consumer bootstep: a
notification's two hops with no work of ours, ``bench/noop_app.py``), and the notify worker on
the same events, once with the outbox providers (files) and once with the local Mandrill and
Twilio servers answering at once, ledger on a throwaway PostgreSQL database each time. Every clock
runs from the first publish to the last task finished (for the notify worker: the last
notification at its provider or in its file). It prints the rates, our rate as a share of each
ceiling beside the issue's target, the CPU per item, and the median of each over the runs.

    PYTHONPATH=. .venv/bin/python bench/throughput.py [--broker rabbitmq|redis|both]
        [--providers outbox|http|both] [--quick]
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
    parser.add_argument(
        "--providers",
        choices=["outbox", "http", "both"],
        default="both",
        help="the worker's destination: outbox files, local Mandrill/Twilio servers, or both (default)",
    )
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


DESTINATIONS = {
    # The targets, per destination: outbox files 0.40 of the same-shape ceiling, the Mandrill
    # provider against its local server 0.30; printed beside each ratio, never asserted.
    "outbox": 0.40,
    "http": 0.30,
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    brokers = ["rabbitmq", "redis"] if args.broker == "both" else [args.broker]
    destinations = list(DESTINATIONS) if args.providers == "both" else [args.providers]
    machine = rig.describe_machine()
    print(f"throughput: {machine}; {args.count} events per run, ledger {args.ledger}", flush=True)
    summary = []
    for broker in brokers:
        ceilings: list[float] = []
        shaped: list[float] = []
        rates: dict[str, list[float]] = {name: [] for name in destinations}
        shaped_ratios: dict[str, list[float]] = {name: [] for name in destinations}
        ratios: dict[str, list[float]] = {name: [] for name in destinations}
        cpu: dict[str, list[float]] = {name: [] for name in destinations}
        rss: list[float] = []
        for run in range(1, args.repeat + 1):
            tag = f"[{broker} run {run}]"
            ceiling = measure_noop(broker, args.pool, args.concurrency, args.count)
            print(f"{tag} {line(ceiling)}  {load()}", flush=True)
            same = measure_noop(broker, args.pool, args.concurrency, args.count, shape="bus")
            print(f"{tag} {line(same)}  {load()}", flush=True)
            ceilings.append(ceiling.rate)
            shaped.append(same.rate)
            for name in destinations:
                result = measure_notify(
                    broker, args.ledger, args.pool, args.concurrency, args.count, outbox=name == "outbox"
                )
                print(f"{tag} {line(result)}  {load()}", flush=True)
                print(f"{tag} ledger: {result.ledger}", flush=True)
                shaped_ratio, ratio = result.rate / same.rate, result.rate / ceiling.rate
                print(
                    f"{tag} {name}: ratio {shaped_ratio:.1%} of the same-shape ceiling (target "
                    f"{DESTINATIONS[name]:.0%}), {ratio:.1%} of the no-op ceiling (same-shape / no-op "
                    f"{same.rate / ceiling.rate:.1%}); CPU {result.cpu_ms_per_item:.2f} ms per "
                    f"notification against the ceiling's {same.cpu_ms_per_item:.2f} ms per event",
                    flush=True,
                )
                rates[name].append(result.rate)
                shaped_ratios[name].append(shaped_ratio * 100)
                ratios[name].append(ratio * 100)
                cpu[name].append(result.cpu_ms_per_item)
                rss.append(result.peak_rss_mb)
        for name in destinations:
            summary.append(
                f"{broker:<9} {name:<6} {args.pool} -c {args.concurrency:<4} no-op {rig.spread(ceilings)} "
                f"tasks/s | same-shape {rig.spread(shaped)} events/s | notify {rig.spread(rates[name])} "
                f"notifications/s | ratio to same-shape {_spread_pct(shaped_ratios[name])} (target "
                f"{DESTINATIONS[name]:.0%}) | ratio to no-op {_spread_pct(ratios[name])} | CPU "
                f"{statistics.median(cpu[name]):.2f} ms/notification | peak RSS {max(rss):.0f} MB"
            )
    print(f"summary (median (min-max) over runs; {load()} at the end):")
    for entry in summary:
        print(f"  {entry}")
    return 0


def _spread_pct(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}% ({min(values):.1f}-{max(values):.1f})"


def load() -> str:
    """The machine is shared: every figure is printed beside the load it was measured under."""
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


if __name__ == "__main__":
    sys.exit(main())
