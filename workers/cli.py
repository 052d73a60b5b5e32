"""The `notify` command line: run the worker, publish events, render templates, and operate the ledger."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from workers.errors import ConfigurationError, InvalidEvent, NotifyError, TemplateError
from workers.messages import Status
from workers.settings import Settings, load_settings, mask_url

EXIT_USAGE = 2


def _out(line: str = "") -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _timestamp(argument: str, value: str | None) -> datetime | None:
    """``--since``/``--until`` as an aware UTC datetime; a BadArgument naming ``argument`` if unusable."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadArgument(argument, f"not an ISO 8601 timestamp: {value!r}") from None
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-23:59 is a valid stamp whose UTC instant is past year 9999.
        raise BadArgument(argument, f"timestamp out of range once in UTC: {value!r}") from None


class BadArgument(NotifyError):
    """Fix the command line: ``argument`` has an unusable value (reported on one line, exit 2)."""

    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        super().__init__(f"{argument}: {problem}")


def _log_level(value: str) -> str:
    import logging

    name = value.strip().upper()
    if name not in logging.getLevelNamesMapping():
        raise argparse.ArgumentTypeError(
            f"unknown log level {value!r}; choose from DEBUG, INFO, WARNING, ERROR"
        )
    return name


def _status(value: str) -> Status:
    try:
        return Status(value.lower())
    except ValueError:
        choices = ", ".join(s.value for s in Status)
        raise argparse.ArgumentTypeError(f"unknown status {value!r}; choose from {choices}") from None


def _package_dir(name: str) -> Path:
    """A data folder shipped in the package (``workers/<name>``; the checkout's top level links there)."""
    found = files("workers") / name
    # Installed as files (plain or editable): the folder is on disk, which the demo lists and reads.
    if not isinstance(found, Path):
        raise ConfigurationError(f"the workers package is not on disk (zipped?), so {name}/ cannot be listed")
    return found


# -- worker -------------------------------------------------------------------------------------


def cmd_worker(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    from workers import logs
    from workers.preflight import check_worker_start

    secrets = settings.secret_values()
    # Before Celery starts: a setting that cannot work ends here in one line, not in a worker that
    # fails every message (a missing key) or every sweep. Warnings only until then, so that line
    # is the only one a failed start prints.
    logs.configure(level="WARNING", fmt=settings.log_format, secrets=secrets)
    check_worker_start(settings)
    logs.configure(level=args.loglevel or settings.log_level, fmt=settings.log_format, secrets=secrets)
    from workers.celery_app import app

    argv = [
        "worker",
        f"--pool={args.pool or settings.worker_pool}",
        f"--concurrency={args.concurrency or settings.worker_concurrency}",
        f"--loglevel={args.loglevel or settings.log_level}",
        *(["--task-events"] if settings.task_events else []),
        "--without-mingle",
        "--without-gossip",
    ]
    if settings.sweep_enabled and not args.no_beat:
        # Only the embedded broker creates the state folder; on RabbitMQ or Redis beat would die
        # at start for want of it, and with it the sweeper.
        state_dir = settings.state_dir.resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        argv.append(f"--sweeper-schedule={state_dir / 'celerybeat-schedule'}")
    app.worker_main([*argv, *extra])
    return 0


# -- publishing ---------------------------------------------------------------------------------


def _connection(settings: Settings) -> Any:
    from kombu.connection import Connection

    from workers.celery_app import broker_settings

    conf = broker_settings(settings)
    return Connection(conf["broker_url"], transport_options=conf.get("broker_transport_options", {}))


def publish_files(settings: Settings, paths: Sequence[Path], routing_key: str | None = None) -> list[str]:
    """Put each event file on the bus; returns one line of report per file."""
    from kombu.messaging import Producer

    from workers.events import load_event_file
    from workers.ingest import declare_bus, publish_event

    report = []
    with _connection(settings) as connection:
        declare_bus(connection, settings)
        producer = Producer(connection.default_channel)
        for path in paths:
            try:
                event = load_event_file(path)
            except InvalidEvent as exc:
                report.append(f"skipped {path}: {exc}")
                continue
            key = routing_key or event.routing_key or "events.unknown"
            publish_event(
                producer, settings, body=event.body, content_type=event.content_type, routing_key=key
            )
            report.append(f"published {path} as {key} ({event.content_type}, {len(event.body)} bytes)")
    return report


def cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        _err(f"notify publish: no such file: {missing[0]}")
        return EXIT_USAGE
    for line in publish_files(settings, paths, args.routing_key):
        _out(line)
    return 0


# -- rendering ----------------------------------------------------------------------------------


def cmd_render(settings: Settings, args: argparse.Namespace) -> int:
    from workers.rendering import mention_template_data
    from workers.runtime import template_store

    store = template_store(settings)
    if args.check:
        failures = 0
        try:
            report = store.check()
        except TemplateError as exc:
            _err(f"notify render --check: {exc}")
            return 1
        for name, parts in sorted(report.items()):
            _out(name)
            for part, variables in sorted(parts.items()):
                _out(f"  {part}: {', '.join(variables) if variables else '(no variables)'}")
        return 1 if failures else 0
    if not args.template or not args.data:
        _err("notify render: give TEMPLATE and --data FILE, or --check")
        return EXIT_USAGE
    try:
        data = json.loads(Path(args.data).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _err(f"notify render: cannot read {args.data}: {exc}")
        return EXIT_USAGE
    # Accept a whole MentionEmailGenerated event, its payload, or its place_holders as data.
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and "@type" in data["data"]:
        from workers.events import parse_event_dict

        try:
            data = dict(parse_event_dict(data).payload)
        except InvalidEvent as exc:
            _err(f"notify render: {args.data} is not a usable event: {exc}")
            return EXIT_USAGE
    if isinstance(data, dict) and "place_holders" in data:
        data = mention_template_data(
            data["place_holders"],
            from_name=data.get("from_name", ""),
            service_name=data.get("service_name", ""),
        )
    elif isinstance(data, dict) and "mentions" in data:
        data = mention_template_data(data, from_name="", service_name="")
    try:
        _out(store.render(args.template, args.part, args.language, data))
    except TemplateError as exc:
        _err(f"notify render: {exc}")
        return 1
    return 0


# -- ledger operations --------------------------------------------------------------------------


def _engine(settings: Settings) -> Any:
    from workers.ledger import make_engine

    return make_engine(settings.resolved_database_url)


def _row_line(item: Any) -> str:
    when = item.created_at.strftime("%Y-%m-%d %H:%M:%S")
    kind = (item.event_type or "-").removeprefix("events.")
    error = (item.error or "").replace("\n", " ")
    if len(error) > 60:
        error = error[:59] + "…"
    return (
        f"{item.id:<38} {kind:<22} {item.channel or '-':<6} {item.status.value:<10} "
        f"{item.provider or '-':<9} {item.attempts:>3}  {when}  {error}"
    )


HEADER = (
    f"{'ID':<38} {'EVENT':<22} {'CHAN':<6} {'STATUS':<10} {'PROVIDER':<9} {'TRY':>3}  "
    f"{'CREATED (UTC)':<19}  ERROR"
)


def _page_tokens(settings: Settings) -> Any:
    from workers.ledger.tokens import PageTokens, load_key

    return PageTokens(lambda: load_key(settings.page_token_key.get_secret_value(), settings.state_dir))


def cmd_list(settings: Settings, args: argparse.Namespace, statuses: tuple[Status, ...]) -> int:
    from workers.ledger.queries import BadQuery, ListFilter, list_notifications

    try:
        # Parsed here, not by argparse: its errors come with a multi-line usage block.
        since = _timestamp("--since", args.since)
        until = _timestamp("--until", args.until)
    except BadArgument as exc:
        _err(f"notify: {exc}")
        return EXIT_USAGE
    query = ListFilter(
        statuses=statuses,
        channel=args.channel,
        event_type=args.event_type,
        recipient=args.recipient,
        since=since,
        until=until,
    )
    try:
        page = list_notifications(
            _engine(settings),
            query,
            tokens=_page_tokens(settings),
            page_size=args.page_size,
            page_token=args.page_token,
        )
    except BadQuery as exc:
        _err(f"notify: --{exc.argument.replace('_', '-')}: {exc}")
        return EXIT_USAGE
    if args.json:
        for item in page.items:
            _out(json.dumps(item.as_json(), ensure_ascii=False))
        if page.next_page_token:
            _out(json.dumps({"next_page_token": page.next_page_token}))
        return 0
    _out(HEADER)
    for item in page.items:
        _out(_row_line(item))
    if not page.items:
        _out("(no notifications match)")
    if page.next_page_token:
        _out(f"\nmore: --page-token {page.next_page_token}")
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    from workers.ledger.queries import get_notification

    view = get_notification(_engine(settings), args.id)
    if view is None:
        _err(f"notify deliveries show: no notification {args.id}")
        return 1
    data = view.as_json()
    if args.json:
        _out(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    for key, value in data.items():
        if key not in ("history", "conflicting_duplicates") and value is not None:
            _out(f"{key:>20}: {value}")
    conflicts = data["conflicting_duplicates"]
    if conflicts:
        accepted = (conflicts["accepted_digest"] or "none (the event was rejected)")[:16]
        _out(
            f"conflicting duplicates: {conflicts['count']}, last at {conflicts['last_at']}, "
            f"digest {conflicts['last_digest'][:16]} (accepted {accepted}); dropped: the id is the dedup key"
        )
    _out("             history:")
    for attempt in data.get("history", []):
        _out(
            f"  #{attempt['number']} {attempt['started_at']} -> {attempt['finished_at'] or '…'} "
            f"{attempt['provider'] or '-'} {attempt['outcome'] or 'in progress'}"
            + (f"  {attempt['error']}" if attempt["error"] else "")
        )
    return 0


def cmd_resend(settings: Settings, args: argparse.Namespace) -> int:
    from workers.ledger import Ledger
    from workers.ledger.states import RESENDABLE, RESENDABLE_FORCED
    from workers.ledger.store import ResendResult

    ledger = Ledger(_engine(settings))
    ids: list[str] = list(args.ids)
    if args.all:
        # In bulk only what certainly never reached anyone: an `unknown` row may have been
        # delivered (check the provider's log, then resend it by id), and `sent` rows are never
        # swept up by --all, --force or not; --force is for ids an operator names.
        ids = ledger.ids_in([Status.FAILED, Status.DEAD])
    if not ids:
        _out("nothing to resend")
        return 0
    from workers.tasks import resend

    # The resend task does the work, so Flower, Python and this command behave the same; we check
    # here first only to report clearly.
    refused = 0
    total = len(ids)
    for done, notification_id in enumerate(ids, 1):
        view_status = ledger_status(ledger, notification_id)
        if view_status is None:
            _err(f"{notification_id}: {ResendResult.NOT_FOUND.value}")
            refused += 1
        elif view_status is Status.SENT and not args.force:
            _err(f"{notification_id}: already sent; use --force to send it again")
            refused += 1
        elif view_status not in (RESENDABLE_FORCED if args.force else RESENDABLE):
            _err(f"{notification_id}: cannot resend from status {view_status.value}")
            refused += 1
        else:
            resend.apply_async(
                (notification_id,),
                {"force": bool(args.force)},
                argsrepr=repr(f"notification {notification_id} resend"),
            )
        if total > 1 and sys.stderr.isatty():
            width = 30
            filled = width * done // total
            sys.stderr.write(f"\rresending [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            sys.stderr.flush()
        elif total > 1 and (done == total or done % max(1, total // 10) == 0):
            _err(f"resending {done}/{total}")
    if total > 1 and sys.stderr.isatty():
        sys.stderr.write("\n")
    _out(f"queued {total - refused} resend(s), refused {refused}")
    return 1 if refused and refused == total else 0


def ledger_status(ledger: Any, notification_id: str) -> Status | None:
    from sqlalchemy import select

    from workers.ledger.models import Notification

    with ledger.engine.connect() as conn:
        value = conn.execute(select(Notification.status).where(Notification.id == notification_id)).scalar()
    return Status(value) if value else None


def cmd_discard(settings: Settings, args: argparse.Namespace) -> int:
    from workers.ledger import Ledger
    from workers.ledger.store import DiscardResult

    ledger = Ledger(_engine(settings))
    failures = 0
    for notification_id in args.ids:
        result = ledger.discard(notification_id)
        if result is DiscardResult.DISCARDED:
            _out(f"{notification_id}: discarded")
        else:
            failures += 1
            _err(f"{notification_id}: {result.value}")
    return 1 if failures else 0


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from workers.ledger.migrate import current_revision
    from workers.preflight import open_ledger

    # Connects, then migrates; a bad URL or a refused connection ends in one line naming the setting.
    engine = open_ledger(settings, create=True)
    _out(f"ledger at revision {current_revision(engine)} ({mask_url(settings.resolved_database_url)})")
    engine.dispose()
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from workers.health import run_checks

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        # Settings that cannot even be read are the first thing health must report, not crash on.
        _out(f"FAIL settings: {exc}")
        return 1
    ok = True
    for check in run_checks(settings, providers=not args.no_providers):
        ok &= check.ok
        _out(f"{'ok ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    return 0 if ok else 1


# -- flower -------------------------------------------------------------------------------------


def cmd_flower(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    """Flower on this app, on 127.0.0.1 unless told otherwise, never without basic auth."""
    if not settings.flower_user or not settings.flower_password:
        # Flower's task API can start tasks (a resend): it must not be open.
        _err("notify flower: set NOTIFY_FLOWER_USER and NOTIFY_FLOWER_PASSWORD")
        return EXIT_USAGE
    password = settings.flower_password.get_secret_value()
    # Flower splits FLOWER_BASIC_AUTH on commas into several user:password pairs: a password
    # "long,x" would let the password "x" in. A colon in the user name would move the split.
    if "," in password:
        _err("notify flower: NOTIFY_FLOWER_PASSWORD must not contain a comma (Flower splits on it)")
        return EXIT_USAGE
    if "," in settings.flower_user or ":" in settings.flower_user:
        _err("notify flower: NOTIFY_FLOWER_USER must not contain a comma or a colon")
        return EXIT_USAGE
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "flower",
        f"--address={args.address}",
        f"--port={args.port}",
        *extra,
    ]
    # Through the environment, not argv: a password in argv shows in every process listing.
    env = dict(os.environ, FLOWER_BASIC_AUTH=f"{settings.flower_user}:{password}")
    os.execve(sys.executable, argv, env)


# -- demo ---------------------------------------------------------------------------------------

DEMO_TIMEOUT = 90.0


def cmd_demo(args: argparse.Namespace) -> int:
    from workers.events import load_event_file, parse_event

    base = Path(args.dir).resolve()
    marker = base / ".notify-demo"
    if base.exists():
        if not marker.exists():
            _err(f"notify demo: {base} exists and is not a demo folder; pass --dir")
            return EXIT_USAGE
        shutil.rmtree(base)
    base.mkdir(parents=True)
    marker.touch()
    defaults = {
        "NOTIFY_DATABASE_URL": f"sqlite:///{base / 'notify.db'}",
        "NOTIFY_OUTBOX_DIR": str(base / "outbox"),
        "NOTIFY_STATE_DIR": str(base / "state"),
        "NOTIFY_SWEEP_INTERVAL": "5",
        "NOTIFY_EMAIL_PROVIDER": "outbox",
        "NOTIFY_SMS_PROVIDER": "outbox",
    }
    for key, value in defaults.items():
        # The user's own settings win: `NOTIFY_BROKER_URL=amqp://... notify demo` runs on RabbitMQ.
        os.environ.setdefault(key, value)
    env = dict(os.environ)
    settings = load_settings()
    examples = _package_dir("examples")
    files = sorted(p for p in examples.rglob("*") if p.suffix in {".json", ".pb"})
    if not files:
        _err(f"notify demo: no example events under {examples}")
        return 1
    expected: dict[str, str] = {}
    types: dict[str, str] = {}  # notification id -> event type, as the file declares it
    for path in files:
        event = load_event_file(path)
        try:
            parsed = parse_event(event.body, event.content_type, routing_key=event.routing_key)
            expected[parsed.notification_id] = str(path.relative_to(examples))
            types[parsed.notification_id] = parsed.event_type
        except InvalidEvent as exc:
            expected[exc.notification_id or "?"] = str(path.relative_to(examples))
            types[exc.notification_id or "?"] = exc.event_type or "?"

    from workers.preflight import open_ledger

    engine = open_ledger(settings, create=True)  # migrated; a bad NOTIFY_DATABASE_URL: one line
    broker = mask_url(settings.broker_url) or "embedded (filesystem)"
    _out(f"notify demo: broker {broker}, ledger {mask_url(settings.resolved_database_url)}")
    log_path = base / "worker.log"
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "workers", "worker", "--concurrency", "4", "--loglevel", "INFO"],
            env=env | {"NOTIFY_LOG_FORMAT": "json", "NOTIFY_AUTO_MIGRATE": "0"},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            _out(f"started a worker (pid {worker.pid}); its log: {log_path}")
            for line in publish_files(settings, files):
                _out("  " + line)
            rows = _wait_terminal(engine, set(expected), worker)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
    return _demo_report(settings, expected, rows, types)


def _wait_terminal(engine: Any, ids: set[str], worker: subprocess.Popen[bytes]) -> dict[str, Any]:
    from workers.ledger.queries import get_notification

    deadline = time.monotonic() + DEMO_TIMEOUT
    rows: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rows = {i: get_notification(engine, i) for i in ids}
        if all(row is not None and row.status.terminal for row in rows.values()):
            break
        if worker.poll() is not None:
            _err(f"notify demo: the worker exited with code {worker.returncode}")
            break
        time.sleep(0.25)
    return rows


def _demo_report(
    settings: Settings, expected: dict[str, str], rows: dict[str, Any], types: dict[str, str]
) -> int:
    _out("")
    _out(f"{'EVENT FILE':<44} {'EVENT TYPE':<28} {'STATUS':<9} RESULT")
    ok = True
    for notification_id, source in sorted(expected.items(), key=lambda kv: kv[1]):
        row = rows.get(notification_id)
        if row is None:
            ok = False
            event_type = types.get(notification_id, "?")
            _out(f"{source:<44} {event_type:<28} {'missing':<9} never reached the ledger")
            continue
        status = row.status.value
        if row.status is Status.SENT:
            result = f"{row.provider} -> {row.provider_message_id}"
        elif row.status is Status.REJECTED:
            result = f"rejected: {row.error}"
            ok = ok and source.startswith("invalid")
        else:
            result = row.error or "still in flight"
            ok = False
        event_type = getattr(row, "event_type", None) or types.get(notification_id, "?")
        _out(f"{source:<44} {event_type:<28} {status:<9} {result}")
    outbox = settings.outbox_dir.resolve()
    _out("")
    _out(f"outbox: {outbox}/email/*.eml and {outbox}/sms/*.json")
    # The exact command, URL included: run elsewhere without it, `notify deliveries list` would
    # look for a notify.db in that folder.
    url = shlex.quote(mask_url(settings.resolved_database_url))
    _out(f"ledger: NOTIFY_DATABASE_URL={url} notify deliveries list")
    if not ok:
        _err("notify demo: not every event reached the state it should")
    return 0 if ok else 1


# -- argument parsing ---------------------------------------------------------------------------


def _list_options(parser: argparse.ArgumentParser, *, with_status: bool) -> None:
    if with_status:
        parser.add_argument("--status", type=_status, action="append", help="repeatable")
    parser.add_argument("--channel", choices=["email", "sms"])
    parser.add_argument("--event-type", help="BasicEmail, SMSNotification, MentionEmailGenerated")
    parser.add_argument("--recipient", help="exact address or number")
    parser.add_argument("--since", help="created at or after (ISO 8601; no offset means UTC)")
    parser.add_argument("--until", help="created before (ISO 8601; no offset means UTC)")
    parser.add_argument("--page-size", type=int, default=25)
    parser.add_argument("--page-token")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notify", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a Celery worker with the bus consumer and the sweeper")
    worker.add_argument("--pool", help="threads (default), prefork, gevent, solo")
    worker.add_argument("--concurrency", type=int)
    worker.add_argument("--loglevel", type=_log_level)
    worker.add_argument("--no-beat", action="store_true", help="do not run the sweeper schedule here")

    publish = sub.add_parser("publish", help="publish raw VtEvent files (.json or .pb) on the event bus")
    publish.add_argument("files", nargs="+")
    publish.add_argument("--routing-key", help="override the routing key (default: the payload type)")

    render = sub.add_parser("render", help="render one part of a template")
    render.add_argument("template", nargs="?")
    render.add_argument("--data", help="JSON file: template data, or an event's place_holders")
    render.add_argument("--language", default="handlebars", choices=["handlebars", "mailchimp"])
    render.add_argument("--part", default="html", choices=["html", "text", "subject"])
    render.add_argument("--check", action="store_true", help="parse every template and list its variables")

    deliveries = sub.add_parser("deliveries", help="look at the ledger").add_subparsers(
        dest="action", required=True
    )
    _list_options(deliveries.add_parser("list", help="list notifications, newest first"), with_status=True)
    show = deliveries.add_parser("show", help="one notification and its attempts")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")

    failed = sub.add_parser("failed", help="act on failed notifications").add_subparsers(
        dest="action", required=True
    )
    _list_options(
        failed.add_parser("list", help="failed, dead, unknown and rejected rows"), with_status=False
    )
    resend = failed.add_parser("resend", help="deliver again (through notifications.resend)")
    resend.add_argument("ids", nargs="*")
    resend.add_argument("--all", action="store_true", help="every failed and dead row (unknown ones by id)")
    resend.add_argument("--force", action="store_true", help="also resend rows already sent")
    discard = failed.add_parser("discard", help="give up on notifications for good")
    discard.add_argument("ids", nargs="+")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply migrations")

    health = sub.add_parser("health", help="check broker, database and providers")
    health.add_argument(
        "--no-providers", action="store_true", help="broker and database only (for container liveness)"
    )
    flower = sub.add_parser("flower", help="Flower with basic auth from NOTIFY_FLOWER_USER/PASSWORD")
    flower.add_argument("--address", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    flower.add_argument("--port", type=int, default=5555)
    demo = sub.add_parser("demo", help="the whole loop on the embedded default")
    demo.add_argument("--dir", default="notify-demo", help="working folder (wiped at start)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `notify deliveries list | head` closed the pipe: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("worker", "flower"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "health":
            return cmd_health(args)
        settings = load_settings()
        if args.command in ("deliveries", "failed"):
            # The ledger must exist and be migrated: these commands never create one (no folder,
            # no empty notify.db) and say so in one line instead of an SQL error.
            from workers.preflight import open_ledger

            open_ledger(settings, create=False).dispose()
        if args.command == "worker":
            return cmd_worker(settings, args, extra)
        if args.command == "publish":
            return cmd_publish(settings, args)
        if args.command == "render":
            return cmd_render(settings, args)
        if args.command == "deliveries":
            return (
                cmd_list(settings, args, tuple(args.status or ()))
                if args.action == "list"
                else cmd_show(settings, args)
            )
        if args.command == "failed":
            if args.action == "list":
                from workers.ledger.states import FAILED_STATES

                return cmd_list(settings, args, tuple(sorted(FAILED_STATES)))
            if args.action == "resend":
                if not args.ids and not args.all:
                    parser.error("failed resend: give IDs or --all")
                return cmd_resend(settings, args)
            return cmd_discard(settings, args)
        if args.command == "db":
            return cmd_db_upgrade(settings, args)
        if args.command == "flower":
            return cmd_flower(settings, args, extra)
    except ConfigurationError as exc:
        _err(f"notify: {exc}")
        return EXIT_USAGE
    except NotifyError as exc:
        _err(f"notify: {exc}")
        return 1
    except Exception as exc:
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(exc, SQLAlchemyError):
            raise
        # The ledger went away mid-command: one line, its secrets scrubbed, no traceback.
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        _err(f"notify: ledger error: {type(exc).__name__}: {load_settings().scrub(detail)}")
        return 1
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE
