"""CPU per provider send: Mandrill and Twilio, as the registry builds them, against the local servers.

    PYTHONPATH=. .venv/bin/python bench/providers.py [--quick] [--sends N] [--rounds R]
        [--log-level INFO] [--profile mandrill|twilio]

Starts the local Mandrill and Twilio servers as their own processes (``bench.rig.FakeServer``),
builds the providers with ``workers.providers.registry`` from settings pointing at them, warms each
connection up, then sends N messages one after another through each provider and prints sends per
second (wall clock) and CPU microseconds per send of this whole process (``time.process_time``
around the loop) and, in brackets, of the sending thread alone (``time.thread_time``).

The servers run in other processes, so the process figure is the client side alone (the thread
figure leaves out any background threads of ours). The baseline line is the ceiling for our own
overhead: the same number of bare ``httpx.Client.post``
calls carrying the same body to the same server (Mandrill: the JSON body our provider would build,
encoded by httpx; Twilio: the same form fields with Basic auth). ``ours - baseline`` is what request
building, the SDK, our client options and reply parsing add per send.

Logging is configured as the worker does it (``workers.logs.configure``, JSON, level ``--log-level``,
INFO by default), with the output thrown away, so log lines written per send are paid for as in the
worker. Each figure is the median of R rounds. ``--profile`` runs one more round of that provider
under cProfile and prints the functions with the most own time. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rig import MANDRILL_KEY, TWILIO_SID, TWILIO_TOKEN, FakeServer
from workers import logs
from workers.messages import EmailMessage, SmsMessage
from workers.providers.base import EmailProvider, SmsProvider
from workers.providers.mandrill import build_send_request
from workers.providers.registry import build_email_provider, build_sms_provider
from workers.settings import load_settings

WARMUP = 20


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    sends: int
    wall_s: float
    cpu_s: float
    thread_cpu_s: float

    @property
    def rate(self) -> float:
        return self.sends / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.sends * 1e6 if self.sends else 0.0

    @property
    def thread_cpu_us(self) -> float:
        return self.thread_cpu_s / self.sends * 1e6 if self.sends else 0.0


def email(notification_id: str) -> EmailMessage:
    """A mention-sized email: both parts, Reply-To, List-Unsubscribe and a tag, as compose builds it."""
    rows = "".join(
        f'<tr><td><a href="https://app.example.com/mentions/{i}?invite=1">Program {i}</a></td>'
        f"<td>...and Acme's plant #{i} opens in spring, said the spokesperson...</td></tr>"
        for i in range(20)
    )
    return EmailMessage(
        notification_id=notification_id,
        from_address="alerts@notify.example.com",
        from_name="Example Alerts",
        to_address="reader@example.org",
        subject="You were mentioned 20 times: Q3 report",
        text="You were mentioned 20 times.\n" * 20,
        html=f"<html><body><table>{rows}</table></body></html>",
        reply_to="support@notify.example.com",
        headers={"List-Unsubscribe": "<https://notify.example.com/u/abc123>"},
        tags=("mention-notification-bulk",),
    )


def sms(notification_id: str) -> SmsMessage:
    return SmsMessage(
        notification_id=notification_id,
        from_number="+15005550006",
        to_number="+447700900123",
        body="Your verification code is 123456. It expires in 10 minutes.",
    )


def clocked(label: str, count: int, send: Callable[[int], object]) -> Figure:
    started_wall, started_cpu, started_thread = time.perf_counter(), time.process_time(), time.thread_time()
    for i in range(count):
        send(i)
    return Figure(
        label,
        count,
        time.perf_counter() - started_wall,
        time.process_time() - started_cpu,
        time.thread_time() - started_thread,
    )


def median(figures: list[Figure]) -> Figure:
    """The round with the median CPU per send (one real round, not a mix of several)."""
    ranked = sorted(figures, key=lambda figure: figure.cpu_s)
    return ranked[len(ranked) // 2]


@contextlib.contextmanager
def worker_logging(level: str) -> Iterator[None]:
    """Logging as the worker configures it, written to /dev/null (formatting is still paid for)."""
    with open(os.devnull, "w") as sink:
        stderr, sys.stderr = sys.stderr, sink
        try:
            logs.configure(level=level, fmt="json")
        finally:
            sys.stderr = stderr
        yield


def profiled(label: str, count: int, send: Callable[[int], object], top: int = 25) -> None:
    profile = cProfile.Profile()
    profile.enable()
    for i in range(count):
        send(i)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
    print(f"--- cProfile of {count} {label} sends: own wall time of this thread (socket calls include")
    print("    waiting for the server process, which is not profiled) ---")
    print(out.getvalue())


def bench_mandrill(sends: int, rounds: int, profile: bool) -> tuple[Figure, Figure]:
    with FakeServer.mandrill() as server:
        settings = load_settings(
            email_provider="mandrill", mandrill_api_key=MANDRILL_KEY, mandrill_base_url=server.url
        )
        provider: EmailProvider = build_email_provider(settings)
        messages = [email(str(uuid.uuid4())) for _ in range(sends)]
        path, body = build_send_request(messages[0], MANDRILL_KEY)
        url = f"{server.url}/{path}"
        client = httpx.Client()

        def ours(i: int) -> object:
            return provider.send_email(messages[i])

        def bare(_: int) -> object:
            return client.post(url, json=body).content

        figures = compare("mandrill", server, sends, rounds, profile, ours, bare)
        provider.close()
        client.close()
    return figures


def compare(
    name: str,
    server: FakeServer,
    sends: int,
    rounds: int,
    profile: bool,
    ours: Callable[[int], object],
    bare: Callable[[int], object],
) -> tuple[Figure, Figure]:
    """Warm both up, then clock ``rounds`` rounds of each; (ours, baseline) as medians."""
    for i in range(WARMUP):
        ours(i)
        bare(i)
    provided, baseline = [], []
    for _ in range(rounds):
        server.reset()  # the server keeps every request; start each round with an empty record
        baseline.append(clocked(f"{name} baseline (bare httpx post)", sends, bare))
        provided.append(clocked(f"{name} provider", sends, ours))
        assert server.accepted_count() == 2 * sends, "every bench send should have been accepted"
    if profile:
        profiled(name, sends, ours)
    return median(provided), median(baseline)


def bench_twilio(sends: int, rounds: int, profile: bool) -> tuple[Figure, Figure]:
    with FakeServer.twilio() as server:
        settings = load_settings(
            sms_provider="twilio",
            twilio_account_sid=TWILIO_SID,
            twilio_auth_token=TWILIO_TOKEN,
            twilio_base_url=server.url,
        )
        provider: SmsProvider = build_sms_provider(settings)
        messages = [sms(str(uuid.uuid4())) for _ in range(sends)]
        url = f"{server.url}/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
        form = {"To": messages[0].to_number, "From": messages[0].from_number, "Body": messages[0].body}
        client = httpx.Client(auth=(TWILIO_SID, TWILIO_TOKEN))

        def ours(i: int) -> object:
            return provider.send_sms(messages[i])

        def bare(_: int) -> object:
            return client.post(url, data=form).content

        figures = compare("twilio", server, sends, rounds, profile, ours, bare)
        provider.close()
        client.close()
    return figures


def report(ours: Figure, baseline: Figure) -> None:
    for figure in (baseline, ours):
        print(
            f"{figure.label:<37} {figure.rate:6.0f} sends/s {figure.cpu_us:6.0f} µs CPU/send"
            f" (sending thread {figure.thread_cpu_us:4.0f} µs)"
        )
    print(
        f"{'  ours minus the baseline':<37} {'':14} {ours.cpu_us - baseline.cpu_us:6.0f} µs CPU/send"
        f" (sending thread {ours.thread_cpu_us - baseline.thread_cpu_us:4.0f} µs)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=2000, help="sends per provider and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median round is reported")
    parser.add_argument("--quick", action="store_true", help="200 sends, 1 round (a smoke run)")
    parser.add_argument("--log-level", default="INFO", help="worker log level (default INFO)")
    parser.add_argument("--profile", choices=["mandrill", "twilio"], help="also print a cProfile")
    args = parser.parse_args(argv)
    sends, rounds = (200, 1) if args.quick else (args.sends, args.rounds)
    print(f"{sends} sequential sends per provider, median of {rounds} round(s), log level {args.log_level}")
    print("CPU is this process's (the client; the servers are other processes); the baseline is the ceiling")
    with worker_logging(args.log_level):
        report(*bench_mandrill(sends, rounds, args.profile == "mandrill"))
        report(*bench_twilio(sends, rounds, args.profile == "twilio"))


if __name__ == "__main__":
    main()
