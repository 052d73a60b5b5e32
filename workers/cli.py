"""The `notify` command line: run the worker, publish events, render templates, and operate the ledger."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.errors import ConfigurationError, InvalidEvent, NotifyError, TemplateError
from workers.event_types import EVENT_TYPES
from workers.messages import Status
from workers.settings import Settings, load_settings, mask_url

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from workers.ledger import BadQuery, Ledger, NotificationView, PageTokens

EXIT_USAGE = 2

# What every subcommand is: its parser says `set_defaults(func=cmd_x)`, and `_main` calls it with the
# settings, the parsed arguments and the options it did not know (only worker and flower take any).
Command = Callable[[Settings, argparse.Namespace, list[str]], int]


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


class MissingArgument(NotifyError):
    """Fix the command line: a required argument is missing (argparse's usage block, exit 2)."""


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

    from workers.broker import broker_settings

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


def cmd_publish(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    paths = [Path(p) for p in args.files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        _err(f"notify publish: no such file: {missing[0]}")
        return EXIT_USAGE
    for line in publish_files(settings, paths, args.routing_key):
        _out(line)
    return 0


# -- rendering ----------------------------------------------------------------------------------


def cmd_render(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    from workers.rendering import mention_template_data
    from workers.runtime import template_store

    store = template_store(settings)
    if args.check:
        try:
            report = store.check()
        except TemplateError as exc:
            _err(f"notify render --check: {exc}")
            return 1
        for name, parts in sorted(report.items()):
            _out(name)
            for part, variables in sorted(parts.items()):
                _out(f"  {part}: {', '.join(variables) if variables else '(no variables)'}")
        return 0
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


def _engine(settings: Settings) -> Engine:
    from workers.ledger import make_engine

    return make_engine(settings.resolved_database_url)


def _row_line(item: NotificationView) -> str:
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


def _page_tokens(settings: Settings) -> PageTokens:
    from workers.ledger import PageTokens, load_key

    return PageTokens(lambda: load_key(settings.page_token_key.get_secret_value(), settings.state_dir))


def _bad_query(exc: BadQuery) -> int:
    _err(f"notify: --{exc.argument.replace('_', '-')}: {exc}")
    return EXIT_USAGE


def _json_page(items: Iterable[Any], next_page_token: str | None) -> int:
    """``--json``: one object per line, then the token of the next page when more rows remain."""
    for item in items:
        _out(json.dumps(item.as_json(), ensure_ascii=False))
    if next_page_token:
        _out(json.dumps({"next_page_token": next_page_token}))
    return 0


def cmd_list(settings: Settings, args: argparse.Namespace, statuses: tuple[Status, ...]) -> int:
    from workers.ledger import BadQuery, ListFilter, list_notifications

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
        return _bad_query(exc)
    if args.json:
        return _json_page(page.items, page.next_page_token)
    _out(HEADER)
    for item in page.items:
        _out(_row_line(item))
    if not page.items:
        _out("(no notifications match)")
    if page.next_page_token:
        _out(f"\nmore: --page-token {page.next_page_token}")
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    from workers.ledger import get_notification

    view = get_notification(_engine(settings), args.id)
    if view is None:
        _err(f"notify deliveries show: no notification {args.id}")
        return 1
    data = view.as_json()
    if args.json:
        from workers.ledger import ReceiptBook

        data["receipts"] = [item.as_json() for item in ReceiptBook(_engine(settings)).of(args.id)]
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
    _show_receipts(settings, args.id)
    return 0


def _show_receipts(settings: Settings, notification_id: str) -> None:
    """The provider's receipts for one notification, in the order they happened."""
    from workers.ledger import ReceiptBook

    receipts = ReceiptBook(_engine(settings)).of(notification_id)
    if not receipts:
        return  # none yet, or a route that never reports: the history says it all
    _out("            receipts:")
    for item in receipts:
        view = item.as_json()
        _out(
            f"  {view['occurred_at']} {view['provider']:<9} {view['raw_status']:<14} "
            f"{view['effect']:<10} {view['error_code'] or ''}".rstrip()
        )


def cmd_resend(settings: Settings, args: argparse.Namespace) -> int:
    from workers.ledger import Ledger, ResendResult, explain_resend

    ledger = Ledger(_engine(settings))
    ids: list[str] = list(args.ids)
    if args.all:
        # The ledger's bulk rule leaves `unknown` rows out (check the provider's log, then resend
        # by id) and `sent` ones, --force or not: --force is for ids an operator names.
        ids = ledger.ids_to_resend_in_bulk()
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
        verdict = explain_resend(view_status, force=bool(args.force))
        if view_status is None:
            _err(f"{notification_id}: {verdict.value}")
            refused += 1
        elif verdict is ResendResult.ALREADY_SENT:
            _err(f"{notification_id}: already sent; use --force to send it again")
            refused += 1
        elif verdict is not ResendResult.QUEUED:
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


# -- suppressions -------------------------------------------------------------------------------


def _recipient_channel(recipient: str, channel: str | None) -> Any:
    """The channel of an address or number (``--channel`` wins): an @ means email, else SMS."""
    from workers.messages import Channel

    if channel:
        return Channel(channel)
    return Channel.EMAIL if "@" in recipient else Channel.SMS


def cmd_suppressions(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    """``notify suppressions list|add|remove``: the list is hashes only; an address is hashed, never shown."""
    from workers.ledger import OPERATOR, BadQuery, Suppressions
    from workers.messages import Channel
    from workers.receipts import SuppressionReason
    from workers.runtime import recipient_keys

    engine = _engine(settings)
    suppressions = Suppressions(engine)
    if args.action == "list":
        try:
            page = suppressions.list(
                tokens=_page_tokens(settings),
                channel=Channel(args.channel) if args.channel else None,
                page_size=args.page_size,
                page_token=args.page_token,
            )
        except BadQuery as exc:
            return _bad_query(exc)
        if args.json:
            return _json_page(page.items, page.next_page_token)
        _out(f"{'CHAN':<6} {'REASON':<12} {'ADDED (UTC)':<19}  {'SOURCE':<24} RECIPIENT KEY")
        for item in page.items:
            when = item.created_at.strftime("%Y-%m-%d %H:%M:%S")
            _out(
                f"{item.channel.value:<6} {item.reason.value:<12} {when}  {item.source[:24]:<24} "
                f"{item.recipient_key}"
            )
        if not page.items:
            _out("(the suppression list is empty)")
        if page.next_page_token:
            _out(f"\nmore: --page-token {page.next_page_token}")
        return 0
    channel = _recipient_channel(args.recipient, args.channel)
    try:
        key = recipient_keys(settings).key_of(channel, args.recipient)
    except ValueError as exc:
        # The problem, never the value: the argument may be someone's address.
        _err(f"notify suppressions {args.action}: RECIPIENT {exc} (channel {channel.value})")
        return EXIT_USAGE
    if args.action == "add":
        added = suppressions.add(channel, key, SuppressionReason(args.reason), source=OPERATOR)
        _out(f"{channel.value} {key}: {'added' if added else 'already on the list'}")
        return 0
    removed = suppressions.remove(channel, key)
    _out(f"{channel.value} {key}: {'removed' if removed else 'was not on the list'}")
    return 0 if removed else 1


def ledger_status(ledger: Ledger, notification_id: str) -> Status | None:
    return ledger.status_of(notification_id)


def cmd_discard(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    from workers.ledger import DiscardResult, Ledger

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


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    from workers.ledger.migrate import current_revision
    from workers.preflight import open_ledger

    # Connects, then migrates; a bad URL or a refused connection ends in one line naming the setting.
    engine = open_ledger(settings, create=True)
    _out(f"ledger at revision {current_revision(engine)} ({mask_url(settings.resolved_database_url)})")
    engine.dispose()
    return 0


def _health_without_settings(error: ConfigurationError) -> int:
    # Settings that cannot even be read are the first thing health must report, not crash on.
    _out(f"FAIL settings: {error}")
    return 1


def cmd_health(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    from workers.health import run_checks

    ok = True
    for check in run_checks(settings, providers=not args.no_providers):
        ok &= check.ok
        _out(f"{'ok ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    return 0 if ok else 1


# -- webhooks -----------------------------------------------------------------------------------


def cmd_webhooks(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    """The webhook receiver; a setting that cannot work ends the start in one line (exit 2)."""
    from workers import logs, webhooks
    from workers.ledger.keys import SUPPRESSION_KEY, load_key

    logs.configure(level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values())
    key = load_key(SUPPRESSION_KEY, settings.suppression_key.get_secret_value(), settings.state_dir)
    config = webhooks.config_from(settings, key)
    sock = webhooks.listen(args.host or settings.webhooks_host, args.port or settings.webhooks_port)
    from workers.celery_app import app

    sink = webhooks.CelerySink(app)
    try:
        webhooks.serve(config, sink, sock)
    finally:
        sink.close()
    return 0


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


def _prepare_demo(args: argparse.Namespace) -> None:
    """Before settings are read: an empty demo folder, and the settings defaulted into it."""
    from workers import demo

    try:
        demo.prepare(Path(args.dir).resolve())
    except demo.PickAnotherFolder as exc:
        raise BadArgument("--dir", str(exc)) from None


def cmd_demo(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    from workers.demo import Demo

    def publish(paths: Sequence[Path]) -> list[str]:
        return publish_files(settings, paths)

    runner = Demo(settings, publish=publish, out=_out, err=_err)
    return runner.run(Path(args.dir).resolve(), _package_dir("examples"))


# -- ledger commands as the parser names them ------------------------------------------------


def cmd_deliveries_list(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    return cmd_list(settings, args, tuple(args.status or ()))


def cmd_failed_list(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    from workers.ledger import FAILED_STATES

    return cmd_list(settings, args, tuple(sorted(FAILED_STATES)))


def cmd_failed_resend(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    if not args.ids and not args.all:
        raise MissingArgument("failed resend: give IDs or --all")
    return cmd_resend(settings, args)


# -- argument parsing ---------------------------------------------------------------------------


def _list_options(parser: argparse.ArgumentParser, *, with_status: bool) -> None:
    if with_status:
        parser.add_argument("--status", type=_status, action="append", help="repeatable")
    parser.add_argument("--channel", choices=["email", "sms"])
    parser.add_argument("--event-type", help=", ".join(name.removeprefix("events.") for name in EVENT_TYPES))
    parser.add_argument("--recipient", help="exact address or number")
    parser.add_argument("--since", help="created at or after (ISO 8601; no offset means UTC)")
    parser.add_argument("--until", help="created before (ISO 8601; no offset means UTC)")
    parser.add_argument("--page-size", type=int, default=25)
    parser.add_argument("--page-token")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _suppression_parsers(sub: Any) -> None:
    from workers.receipts import SuppressionReason

    actions = sub.add_parser(
        "suppressions", help="recipients never sent to (kept as keyed hashes)"
    ).add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="newest first, paged like deliveries list")
    listing.add_argument("--channel", choices=["email", "sms"])
    listing.add_argument("--page-size", type=int, default=25)
    listing.add_argument("--page-token")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    for action, text in (("add", "put a recipient on the list"), ("remove", "take a recipient off the list")):
        command = actions.add_parser(action, help=text)
        command.add_argument(
            "recipient", metavar="RECIPIENT", help="an address or number (hashed, never stored)"
        )
        command.add_argument("--channel", choices=["email", "sms"], help="default: email if it has an @")
        if action == "add":
            command.add_argument("--reason", default="manual", choices=[r.value for r in SuppressionReason])
        command.set_defaults(func=cmd_suppressions, needs_ledger=True)
    listing.set_defaults(func=cmd_suppressions, needs_ledger=True)


def _settings_refused(error: ConfigurationError) -> int:
    _err(f"notify: {error}")
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand names its function with ``set_defaults(func=...)``; the other defaults say
    how ``_main`` prepares the call, and a subcommand sets only those that differ from these."""
    parser = argparse.ArgumentParser(prog="notify", description=__doc__)
    parser.set_defaults(
        passes_extra=False,  # unknown options go on to Celery or Flower instead of being an error
        needs_ledger=False,  # the ledger must exist and be migrated first; it is never created
        before_settings=None,  # runs on the arguments before the settings are read (the demo's folder)
        unreadable_settings=_settings_refused,  # what settings that cannot be read become
    )
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a Celery worker with the bus consumer and the sweeper")
    worker.add_argument("--pool", help="threads (default), prefork, gevent, solo")
    worker.add_argument("--concurrency", type=int)
    worker.add_argument("--loglevel", type=_log_level)
    worker.add_argument("--no-beat", action="store_true", help="do not run the sweeper schedule here")
    worker.set_defaults(func=cmd_worker, passes_extra=True)

    publish = sub.add_parser("publish", help="publish raw VtEvent files (.json or .pb) on the event bus")
    publish.add_argument("files", nargs="+")
    publish.add_argument("--routing-key", help="override the routing key (default: the payload type)")
    publish.set_defaults(func=cmd_publish)

    render = sub.add_parser("render", help="render one part of a template")
    render.add_argument("template", nargs="?")
    render.add_argument("--data", help="JSON file: template data, or an event's place_holders")
    render.add_argument("--language", default="handlebars", choices=["handlebars", "mailchimp"])
    render.add_argument("--part", default="html", choices=["html", "text", "subject"])
    render.add_argument("--check", action="store_true", help="parse every template and list its variables")
    render.set_defaults(func=cmd_render)

    deliveries = sub.add_parser("deliveries", help="look at the ledger").add_subparsers(
        dest="action", required=True
    )
    listing = deliveries.add_parser("list", help="list notifications, newest first")
    _list_options(listing, with_status=True)
    listing.set_defaults(func=cmd_deliveries_list, needs_ledger=True)
    show = deliveries.add_parser("show", help="one notification and its attempts")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show, needs_ledger=True)

    failed = sub.add_parser("failed", help="act on failed notifications").add_subparsers(
        dest="action", required=True
    )
    failed_list = failed.add_parser("list", help="failed, dead, unknown and rejected rows")
    _list_options(failed_list, with_status=False)
    failed_list.set_defaults(func=cmd_failed_list, needs_ledger=True)
    resend = failed.add_parser("resend", help="deliver again (through notifications.resend)")
    resend.add_argument("ids", nargs="*")
    resend.add_argument("--all", action="store_true", help="every failed and dead row (unknown ones by id)")
    resend.add_argument("--force", action="store_true", help="also resend rows already sent")
    resend.set_defaults(func=cmd_failed_resend, needs_ledger=True)
    discard = failed.add_parser("discard", help="give up on notifications for good")
    discard.add_argument("ids", nargs="+")
    discard.set_defaults(func=cmd_discard, needs_ledger=True)

    _suppression_parsers(sub)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    health = sub.add_parser("health", help="check broker, database and providers")
    health.add_argument(
        "--no-providers", action="store_true", help="broker and database only (for container liveness)"
    )
    health.set_defaults(func=cmd_health, unreadable_settings=_health_without_settings)
    webhooks = sub.add_parser("webhooks", help="receive Mandrill and Twilio webhooks (delivery receipts)")
    webhooks.add_argument("--host", help="bind address (default NOTIFY_WEBHOOKS_HOST, 127.0.0.1)")
    webhooks.add_argument("--port", type=int, help="port (default NOTIFY_WEBHOOKS_PORT, 8025)")
    webhooks.set_defaults(func=cmd_webhooks)
    flower = sub.add_parser("flower", help="Flower with basic auth from NOTIFY_FLOWER_USER/PASSWORD")
    flower.add_argument("--address", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    flower.add_argument("--port", type=int, default=5555)
    flower.set_defaults(func=cmd_flower, passes_extra=True)
    demo = sub.add_parser("demo", help="the whole loop on the embedded default")
    demo.add_argument("--dir", default="notify-demo", help="working folder (wiped at start)")
    demo.set_defaults(func=cmd_demo, before_settings=_prepare_demo)
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
    if extra and not args.passes_extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    command: Command = args.func
    try:
        if args.before_settings is not None:
            args.before_settings(args)
        try:
            settings = load_settings()
        except ConfigurationError as exc:
            refused: Callable[[ConfigurationError], int] = args.unreadable_settings
            return refused(exc)
        if args.needs_ledger:
            # These commands never create a ledger (no folder, no empty notify.db) and say so in
            # one line instead of an SQL error.
            from workers.preflight import open_ledger

            open_ledger(settings, create=False).dispose()
        return command(settings, args, extra)
    except MissingArgument as exc:
        parser.error(str(exc))
    except (ConfigurationError, BadArgument) as exc:
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
