"""Scaling out: one `notify worker` node, then two, on one RabbitMQ and one PostgreSQL; then a SIGKILL.

Each node is a real ``notify worker`` (threads pool) with a node name of its own; the sweeper's beat
runs in the first node only. The local Mandrill and Twilio servers answer every send after 100 ms
(``--delay``), as real providers take their time. A configuration's rate runs from the first
publish to the last notification at a provider, printed beside the load average it ran under and
the CPU of all its nodes per notification.

The kill run: two nodes take a run, and once a third of it has reached the providers the second node
(the one without the beat) is killed with SIGKILL, mid-send. The survivor must take over the queue:
the deliver tasks the dead node held come back (late acks, reject on worker lost), its unacked bus
messages come back (the ledger makes the second intake a no-op), its sends cut off mid-flight go
`unknown` through the survivor's sweeper, never resent on their own. An `unknown` row is then
settled the way the README tells an operator to: resent if the provider never accepted it, left as
it is if it did. Each id's acceptances are counted at the provider: every event must end up sent
exactly once. ``tests/integration/test_two_nodes.py`` runs the same procedure at a smaller size.

    PYTHONPATH=. .venv/bin/python bench/scale.py [-n 3000] [--concurrency 32] [--delay 0.1] [--quick]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from bench import rig
from bench.measure import NotifyRun, notify_worker
from bench.services import connection
from bench.workload import encoded, plan
from workers.ledger import make_engine
from workers.ledger.models import Notification
from workers.messages import TERMINAL, Status
from workers.settings import Settings

# The kill run's timings: sends cut off by the kill go `unknown` after SENDING_TIMEOUT (above the
# providers' client timeout, so only the dead go silent), and rows whose bus message the dead node
# had written but whose deliver task it never sent are re-enqueued after STUCK_AFTER.
KILL_ENV = {
    "NOTIFY_SWEEP_INTERVAL": "1",
    "NOTIFY_SENDING_TIMEOUT": "8",
    "NOTIFY_STUCK_AFTER": "30",
    "MANDRILL_TIMEOUT": "3",
    "TWILIO_TIMEOUT": "3",
}
WARM_UP = 10  # events notify_worker sends before handing over the run


@dataclass(frozen=True, slots=True)
class NodesResult:
    nodes: int
    count: int
    seconds: float
    cpu_ms_per_item: float
    load: str

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class KillReport:
    """What a run with one node killed mid-send left behind, as the ledger and the providers tell it."""

    ids: frozenset[str]
    at_provider_before_kill: int
    in_flight_at_kill: frozenset[str]  # rows in `sending` right after the kill, on either node
    victim_dead: bool
    survivor_alive: bool
    arrived_after_kill: int  # first acceptances after the kill: the survivor's work
    statuses: Mapping[str, Status]  # after the run, before the operator's resends
    resent: frozenset[str]  # `unknown` rows the provider never accepted, resent by id
    final: Mapping[str, Status]  # after the resends
    accepted: Mapping[str, int]  # provider acceptances per id, the ground truth of what was sent
    queues_left: Mapping[str, int]  # messages still on the bus and task queues at the end
    seconds: float

    @property
    def sent_twice(self) -> dict[str, int]:
        return {i: n for i, n in self.accepted.items() if n > 1}

    @property
    def never_sent(self) -> frozenset[str]:
        return frozenset(i for i in self.ids if not self.accepted.get(i))

    def summary(self) -> str:
        before = collections.Counter(s.value for s in self.statuses.values())
        after = collections.Counter(s.value for s in self.final.values())
        return (
            f"kill run: {len(self.ids)} events, second node SIGKILLed after {self.at_provider_before_kill} "
            f"reached a provider ({len(self.in_flight_at_kill)} rows in `sending` at the kill); "
            f"{self.arrived_after_kill} delivered after it by the survivor in {self.seconds:.1f} s\n"
            f"  ledger after the run: {dict(sorted(before.items()))}\n"
            f"  unknown rows the provider never accepted, resent by id: {len(self.resent)}; "
            f"ledger after: {dict(sorted(after.items()))}\n"
            f"  provider acceptances: {sum(self.accepted.values())} for {len(self.ids)} events; "
            f"sent twice {len(self.sent_twice)}, never sent {len(self.never_sent)}; "
            f"queues left {dict(self.queues_left)}"
        )


def measure_nodes(nodes: int, count: int, concurrency: int, delay: float) -> NodesResult:
    """``nodes`` workers on RabbitMQ and PostgreSQL take ``count`` events; the rate of all of them."""
    with notify_worker("rabbitmq", "postgres", "threads", concurrency, delay=delay, nodes=nodes) as run:
        meters = [rig.Meter(node.pid) for node in run.nodes]
        cpu_before = sum(m.cpu_seconds() for m in meters)
        seconds = run.send(plan(count, seed=8), timeout=max(120.0, count / 10))
        cpu = sum(m.cpu_seconds() for m in meters) - cpu_before
        return NodesResult(nodes, count, seconds, cpu * 1000 / count, load())


def kill_one_node(
    count: int, concurrency: int, delay: float, *, share_before_kill: float = 1 / 3, timeout: float = 300
) -> KillReport:
    """Two nodes take ``count`` events; the second is SIGKILLed once ``share_before_kill`` of them
    reached a provider; then the survivor finishes and the in-doubt rows are settled by id."""
    with notify_worker(
        "rabbitmq", "postgres", "threads", concurrency, delay=delay, nodes=2, env=KILL_ENV
    ) as run:
        survivor, victim = run.nodes
        planned = plan(count, seed=17)
        ids = frozenset(p.notification_id for p in planned)
        messages = encoded(planned)
        started = time.monotonic()
        rig.publish_bus(run.settings, messages)
        threshold = WARM_UP + int(count * share_before_kill)
        _wait(lambda: run.providers.delivered() >= threshold, run, timeout, "a share before the kill")
        victim.kill()
        killed_at = time.time()
        at_provider = run.providers.delivered() - WARM_UP
        in_flight = frozenset(_with_status(run.settings, Status.SENDING))

        def every_row_terminal() -> bool:
            statuses = _statuses(run.settings)
            return len(statuses) >= count + WARM_UP and all(s in TERMINAL for s in statuses.values())

        _wait(every_row_terminal, run, timeout, "every row to end terminal")
        _wait(lambda: sum(_queue_depths(run.settings).values()) == 0, run, timeout, "the queues to drain")
        seconds = time.monotonic() - started
        statuses = {i: s for i, s in _statuses(run.settings).items() if i in ids}
        accepted = run.providers.acceptances()
        # The README's procedure for `unknown`: look at the provider's log (here, its acceptances),
        # resend what it never got, leave what it did.
        resent = frozenset(i for i, s in statuses.items() if s is Status.UNKNOWN and not accepted[i])
        if resent:
            _resend(survivor, sorted(resent))
            _wait(
                lambda: all(_statuses(run.settings)[i] in TERMINAL - {Status.UNKNOWN} for i in resent),
                run,
                timeout,
                "the resent rows to end",
            )
        final = {i: s for i, s in _statuses(run.settings).items() if i in ids}
        arrivals = run.providers.arrivals()
        return KillReport(
            ids=ids,
            at_provider_before_kill=at_provider,
            in_flight_at_kill=in_flight,
            victim_dead=not victim.alive(),
            survivor_alive=survivor.alive(),
            arrived_after_kill=sum(1 for i in ids if arrivals.get(i, 0.0) > killed_at),
            statuses=statuses,
            resent=resent,
            final=final,
            accepted={i: n for i, n in run.providers.acceptances().items() if i in ids},
            queues_left=_queue_depths(run.settings),
            seconds=seconds,
        )


def _wait(check: Callable[[], bool], run: NotifyRun, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if not run.worker.alive():
            raise RuntimeError(
                f"the surviving node exited while waiting for {what}:\n{run.worker.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"timed out waiting for {what}; ledger {rig.status_counts(run.settings)}:\n"
                f"{run.worker.log_tail()}"
            )
        time.sleep(0.2)


def _statuses(settings: Settings) -> dict[str, Status]:
    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Notification.id, Notification.status)).all()
        return {str(i): Status(s) for i, s in rows}
    finally:
        engine.dispose()


def _with_status(settings: Settings, status: Status) -> list[str]:
    return [i for i, s in _statuses(settings).items() if s is status]


def _queue_depths(settings: Settings) -> dict[str, int]:
    depths = {}
    with connection(settings) as conn:
        for name in (settings.event_queue, settings.task_queue):
            with conn.channel() as channel:
                depths[name.split("-test-")[0]] = channel.queue_declare(
                    queue=name, passive=True
                ).message_count
    return depths


def _resend(node: rig.Process, ids: list[str]) -> None:
    """``notify failed resend ID...`` with the nodes' own settings, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "workers", "failed", "resend", *ids],
        env=node.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"notify failed resend exited {done.returncode}: {done.stderr[-2000:]}")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=3000, help="events per run (default 3,000)")
    parser.add_argument("--concurrency", type=int, default=32, help="threads per node (default 32)")
    parser.add_argument("--delay", type=float, default=0.1, help="provider reply delay, s (default 0.1)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (default 1)")
    parser.add_argument("--no-kill", action="store_true", help="leave out the kill run")
    parser.add_argument("--quick", action="store_true", help="300 events, one run: proves the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.repeat = 300, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"scale: {rig.describe_machine()}; {args.count} events per run, threads -c {args.concurrency} "
        f"per node, providers answering in {args.delay * 1000:.0f} ms, RabbitMQ + PostgreSQL",
        flush=True,
    )
    rates: dict[int, list[float]] = {1: [], 2: []}
    for run in range(1, args.repeat + 1):
        for nodes in (1, 2):
            result = measure_nodes(nodes, args.count, args.concurrency, args.delay)
            rates[nodes].append(result.rate)
            print(
                f"[run {run}] {nodes} node{'s' if nodes > 1 else ' '} {result.rate:>8,.0f} notifications/s  "
                f"{result.count} in {result.seconds:6.2f} s  cpu {result.cpu_ms_per_item:5.2f} ms/item "
                f"(all nodes)  {result.load}",
                flush=True,
            )
    gain = statistics.median(rates[2]) / statistics.median(rates[1])
    print(
        f"summary (median (min-max)): 1 node {rig.spread(rates[1])} | 2 nodes {rig.spread(rates[2])} "
        f"notifications/s | 2 nodes / 1 node {gain:.2f}x  {load()}"
    )
    if args.no_kill:
        return 0
    report = kill_one_node(args.count, args.concurrency, args.delay)
    print(report.summary(), flush=True)
    if report.sent_twice or report.never_sent:
        print(f"  FAILED: sent twice {report.sent_twice}; never sent {sorted(report.never_sent)[:20]}")
        return 1
    print(f"  every event sent exactly once  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
