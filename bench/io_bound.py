"""Throughput with providers that take 100 ms to answer, per pool and concurrency, and the pick.

Each configuration gets a fresh ``notify worker`` (gevent: Celery's own entry point, which
monkey-patches first), a fresh ledger and local Mandrill and Twilio servers that wait ``--delay``
seconds before every answer. It prints delivered notifications per second, CPU per notification
and peak RSS (worker and pool children), then the configuration with the highest rate whose
memory stays under the budget. The budget is checked on PSS, which counts the pages a forked child
(pool children, the embedded beat) still shares with its parent once; the RSS sum counts them twice.
Under gevent the worker runs without the embedded beat (Celery's entry point), so one process less.

    PYTHONPATH=. .venv/bin/python bench/io_bound.py [--configs threads:8,threads:50,...] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rig
from bench.measure import Result, measure_notify

DEFAULT_CONFIGS = "threads:8,threads:50,threads:100,threads:200,prefork:8,gevent:100,gevent:200"
RSS_BUDGET_MB = 200.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["rabbitmq", "redis"], default="rabbitmq")
    parser.add_argument("--ledger", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--configs", default=DEFAULT_CONFIGS, help=f"pool:concurrency,... ({DEFAULT_CONFIGS})"
    )
    parser.add_argument(
        "-n", "--count", type=int, default=2000, help="events per configuration (default 2,000)"
    )
    parser.add_argument("--delay", type=float, default=0.1, help="provider answer delay in seconds (0.1)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (default 1)")
    parser.add_argument("--quick", action="store_true", help="60 events, two configurations")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.configs, args.repeat = 60, "threads:8,threads:50", 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configs = [(pool, int(size)) for pool, size in (item.split(":") for item in args.configs.split(","))]
    print(
        f"io_bound: {rig.describe_machine()}; providers answer after {args.delay * 1000:.0f} ms; "
        f"{args.count} events per run, broker {args.broker}, ledger {args.ledger}",
        flush=True,
    )
    best: dict[tuple[str, int], list[Result]] = {}
    for pool, size in configs:
        for _ in range(args.repeat):
            try:
                result = measure_notify(args.broker, args.ledger, pool, size, args.count, delay=args.delay)
            except Exception as exc:  # one pool failing (gevent not installed ...) must not end the table
                print(f"{pool} -c {size}: failed: {str(exc).splitlines()[0]}", flush=True)
                continue
            best.setdefault((pool, size), []).append(result)
            print(
                f"{pool:<8} -c {size:<4} {result.rate:>7,.0f} notifications/s  {result.count} in "
                f"{result.seconds:6.2f} s  cpu {result.cpu_ms_per_item:5.2f} ms/notification  "
                f"peak RSS {result.rss_detail}  ledger {result.ledger}",
                flush=True,
            )
    fitting = {
        key: max(r.rate for r in results)
        for key, results in best.items()
        if max(r.peak_pss_mb for r in results) < RSS_BUDGET_MB
    }
    if fitting:
        (pool, size), rate = max(fitting.items(), key=lambda item: item[1])
        print(
            f"recommended: --pool {pool} --concurrency {size} ({rate:,.0f} notifications/s, "
            f"under {RSS_BUDGET_MB:.0f} MB PSS)"
        )
    else:
        print(f"recommended: none of the configurations stayed under {RSS_BUDGET_MB:.0f} MB PSS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
