"""Events per second through ``parse_event`` (decode and validate) on the benchmark's event mix.

    PYTHONPATH=. .venv/bin/python bench/parse.py [--events N] [--repeats N] [--seed N] [--quick]

Encodes the mix of ``bench/workload.py`` once (4 in 10 BasicEmail, 3 SMS, 3 mention emails with 1
to 50 mentions; half proto3 JSON, half protobuf binary), then times ``parse_event`` over every
event, best of several repeats, overall and per kind and encoding. Only parsing is timed: no bus,
no ledger, no rendering; the garbage collector is held off during a pass (as timeit does) so that
its pauses do not land on whichever group happens to be running. Prints figures; never passes or
fails on time.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.workload import plan
from workers.events import JSON_CONTENT_TYPE, parse_event

# A fixed publish moment: the baggage entry real bench events carry, but the same bytes every run.
PUBLISHED_AT = 1_764_064_800.0
KIND_LABELS = {"BasicEmail": "BasicEmail", "SMSNotification": "SMS", "MentionEmailGenerated": "mention"}


@dataclass(frozen=True, slots=True)
class Sample:
    """One encoded event of the mix and the group it is reported under."""

    body: bytes
    content_type: str
    routing_key: str
    kind: str  # BasicEmail, SMS or mention
    encoding: str  # json or protobuf


@dataclass(frozen=True, slots=True)
class Figure:
    """The best time over the repeats for one group of samples."""

    label: str
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def micros(self) -> float:
        return self.seconds / self.events * 1e6 if self.events else 0.0


def samples(count: int, seed: int) -> list[Sample]:
    """The mix, encoded once."""
    return [
        Sample(
            body=item.encode(PUBLISHED_AT),
            content_type=item.content_type,
            routing_key=item.routing_key,
            kind=KIND_LABELS[item.kind],
            encoding="json" if item.content_type == JSON_CONTENT_TYPE else "protobuf",
        )
        for item in plan(count, seed=seed)
    ]


def time_group(group: Sequence[Sample], repeats: int) -> float:
    """The fastest of ``repeats`` passes of ``parse_event`` over ``group``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for sample in group:
                parse_event(sample.body, sample.content_type, routing_key=sample.routing_key)
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best


def measure(mix: Sequence[Sample], repeats: int) -> list[Figure]:
    """The whole mix first, then each kind, each encoding, and each kind in each encoding."""
    groups: dict[str, list[Sample]] = {"all": list(mix), "json": [], "protobuf": []}
    for kind in KIND_LABELS.values():
        groups.update({kind: [], f"{kind} json": [], f"{kind} protobuf": []})
    for sample in mix:
        for label in (sample.encoding, sample.kind, f"{sample.kind} {sample.encoding}"):
            groups[label].append(sample)
    time_group(mix, 1)  # warm up: imports, descriptor pools, regex caches
    return [Figure(label, len(group), time_group(group, repeats)) for label, group in groups.items() if group]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=2000, help="events in the mix (default 2000)")
    parser.add_argument("--repeats", type=int, default=7, help="passes per group; the best counts")
    parser.add_argument("--seed", type=int, default=8, help="the mix's seed (default 8, as the bench)")
    parser.add_argument("--quick", action="store_true", help="200 events, 2 repeats: a smoke run")
    args = parser.parse_args(argv)
    count, repeats = (200, 2) if args.quick else (args.events, args.repeats)

    mix = samples(count, args.seed)
    print(f"parse_event over {len(mix)} events (seed {args.seed}), best of {repeats} passes")
    print(f"{'group':<20} {'events':>7} {'events/s':>10} {'us/event':>10}")
    for figure in measure(mix, repeats):
        print(f"{figure.label:<20} {figure.events:>7} {figure.per_second:>10.0f} {figure.micros:>10.1f}")


if __name__ == "__main__":
    main()
