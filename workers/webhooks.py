"""The provider webhook receiver (`notify webhooks`): signed requests in, receipt values handed on durably.

A Starlette app served by uvicorn, one process:

- ``POST /webhooks/mandrill`` (``GET``/``HEAD`` answer 200: Mandrill checks the URL when a webhook
  is added), ``POST /webhooks/twilio`` (status callbacks), ``GET /healthz``.
- Signatures are computed over ``NOTIFY_PUBLIC_URL`` + the path (+ the query string, if the
  provider was given one): the URL the provider signed, whatever host or proxy the request came
  through. A missing or wrong signature is a 403 and nothing is handed on.
- A body over 10 MiB is a 413, counted while it is read (a Content-Length is not trusted alone);
  a body that is not the provider's format is a 400.
- A valid request is answered 200 only after the ``ReceiptSink`` has the receipts durably; when it
  cannot (broker down, publish not confirmed) the answer is 503 and the provider sends again.
  The ledger de-duplicates by provider event id, so a second delivery of a batch is harmless.

The parsing is the providers' (``providers.mandrill_webhooks``, ``providers.twilio_callbacks``);
this module owns HTTP, the limits, the hand-off and the logs (ids and counts, never a body,
address or number).
"""

from __future__ import annotations

import signal
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message

from workers.errors import ConfigurationError, InvalidWebhook, NotifyError
from workers.providers import mandrill_webhooks, twilio_callbacks
from workers.receipts import DeliveryReceipt, SuppressionChange
from workers.settings import Settings

log = structlog.get_logger("workers.webhooks")

MANDRILL_PATH = "/webhooks/mandrill"
TWILIO_PATH = "/webhooks/twilio"
HEALTH_PATH = "/healthz"
MAX_BODY = 10 * 1024 * 1024
# Said in MiB: a bare byte count in a log line reads like a phone number to the log scrubber.
TOO_LARGE = "body over 10 MiB"
SIGNATURE_HEADERS = {
    mandrill_webhooks.PROVIDER: mandrill_webhooks.SIGNATURE_HEADER,
    twilio_callbacks.PROVIDER: twilio_callbacks.SIGNATURE_HEADER,
}
# A Twilio callback has about 15 fields, a Mandrill batch one; far more is no provider's request.
MAX_FIELDS = 64
RECEIPT_TASK = "notifications.receipt"


class HandOffFailed(NotifyError):
    """Answer the provider 503 so that it sends again: the receipts could not be made durable."""


class ReceiptSink(Protocol):
    """Where verified receipts go; ``put`` returns only once they are durable, else raises HandOffFailed."""

    def put(self, receipts: Sequence[DeliveryReceipt], changes: Sequence[SuppressionChange]) -> None: ...


class MemorySink:
    """Keeps what it is given, in order, in this process: for tests and the benchmark.

    ``keep=False`` only counts (a benchmark of millions of receipts). ``unavailable`` makes every
    ``put`` fail as a broker outage would; ``fail_next(n)`` only the next ``n``.
    """

    def __init__(self, *, keep: bool = True) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self.batches: list[tuple[tuple[DeliveryReceipt, ...], tuple[SuppressionChange, ...]]] = []
        self.receipt_count = 0
        self.change_count = 0
        self.unavailable = False
        self._failures = 0

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._failures = count

    def put(self, receipts: Sequence[DeliveryReceipt], changes: Sequence[SuppressionChange]) -> None:
        with self._lock:
            failing = self.unavailable or self._failures > 0
            self._failures = max(self._failures - 1, 0)
        if failing:
            raise HandOffFailed("the in-memory sink is switched to unavailable")
        with self._lock:
            self.receipt_count += len(receipts)
            self.change_count += len(changes)
            if self._keep:
                self.batches.append((tuple(receipts), tuple(changes)))

    @property
    def receipts(self) -> list[DeliveryReceipt]:
        with self._lock:
            return [receipt for batch, _ in self.batches for receipt in batch]

    @property
    def changes(self) -> list[SuppressionChange]:
        with self._lock:
            return [change for _, batch in self.batches for change in batch]


class CelerySink:
    """Publishes each request's receipts as one ``notifications.receipt`` task, broker-confirmed.

    The task is sent by name: its body lives with the ledger, in the worker. Its arguments are
    ``(receipt dicts, change dicts)``, ids, statuses and recipient hashes only, and its
    ``argsrepr`` is just the counts, for Flower. On RabbitMQ (py-amqp) the connection runs with
    ``confirm_publish``: ``put`` returns after the broker's ack, and a nack or a lost connection
    raises. The embedded filesystem broker has written the file (renamed into place) by then;
    Redis has the message in memory, as durable as its persistence setting.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._connection = app.connection_for_write(transport_options={"confirm_publish": True})
        # One connection, one publish at a time: a py-amqp channel is not safe across threads.
        self._lock = threading.Lock()

    def put(self, receipts: Sequence[DeliveryReceipt], changes: Sequence[SuppressionChange]) -> None:
        args = ([receipt.to_task() for receipt in receipts], [change.to_task() for change in changes])
        try:
            with self._lock:
                self._app.send_task(
                    RECEIPT_TASK,
                    args=args,
                    kwargs={},
                    connection=self._connection,
                    argsrepr=f"({len(receipts)} receipts, {len(changes)} changes)",
                    kwargsrepr="{}",
                    retry=True,
                    retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.4},
                )
        except Exception as exc:
            # Whatever kept the broker from confirming (refused, reset, nacked, timed out), the
            # receipts are not durable: the provider must send them again.
            raise HandOffFailed(f"publishing {RECEIPT_TASK} failed: {type(exc).__name__}") from None

    def close(self) -> None:
        self._connection.release()


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """What the receiver needs: the public URL, each provider's signing secret, the recipient-hash key."""

    public_url: str
    suppression_key: bytes = field(repr=False)
    mandrill_webhook_key: SecretStr = field(default_factory=lambda: SecretStr(""))
    twilio_auth_token: SecretStr = field(default_factory=lambda: SecretStr(""))

    def signed_url(self, path: str, query: str) -> str:
        return self.public_url.rstrip("/") + path + (f"?{query}" if query else "")


def config_from(settings: Settings, suppression_key: bytes) -> ReceiverConfig:
    """The receiver's config from the settings; a ConfigurationError naming the setting when unusable."""
    url = settings.public_url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if not url or parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            "NOTIFY_PUBLIC_URL: set it to the URL the providers call, e.g. https://hooks.example.com "
            "(signatures are checked against it)"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError("NOTIFY_PUBLIC_URL: give the URL without a query or fragment")
    config = ReceiverConfig(
        public_url=url,
        suppression_key=suppression_key,
        mandrill_webhook_key=settings.mandrill_webhook_key,
        twilio_auth_token=settings.twilio_auth_token,
    )
    if not config.mandrill_webhook_key.get_secret_value() and not config.twilio_auth_token.get_secret_value():
        raise ConfigurationError(
            "MANDRILL_WEBHOOK_KEY and TWILIO_AUTH_TOKEN are both unset: no webhook could be verified"
        )
    return config


class _BodyTooLarge(Exception):
    pass


async def _read_form(request: Request) -> FormData:
    """The form, read with the body capped at MAX_BODY; _BodyTooLarge or InvalidWebhook otherwise."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidWebhook("Content-Length", "is not a number")
        if int(declared) > MAX_BODY:
            raise _BodyTooLarge()
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > MAX_BODY:
                raise _BodyTooLarge()
        return message

    # Without "app" in the scope Starlette raises its parser's own error, not an HTTP 400 of its
    # wording; ours names the part.
    scope = {key: value for key, value in request.scope.items() if key != "app"}
    capped = Request(scope, receive)
    try:
        return await capped.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_BODY)
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", None) or type(exc).__name__
        raise InvalidWebhook("body", str(detail)) from None
    except UnicodeDecodeError:
        raise InvalidWebhook("body", "is not UTF-8 form data") from None


def _refuse(provider: str, request_id: str, status: int, reason: str) -> Response:
    log.warning("webhook.refused", provider=provider, request_id=request_id, status=status, reason=reason)
    return JSONResponse({"error": reason}, status_code=status, headers={"X-Request-Id": request_id})


def create_app(
    config: ReceiverConfig,
    sink: ReceiptSink,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Starlette:
    """The ASGI app; a provider whose secret is unset has no route (404), so nothing unverified gets in."""
    mandrill_key = config.mandrill_webhook_key.get_secret_value().encode()
    twilio_token = config.twilio_auth_token.get_secret_value()

    async def hand_off(
        provider: str,
        request_id: str,
        receipts: Sequence[DeliveryReceipt],
        changes: Sequence[SuppressionChange],
        skipped: dict[str, int],
    ) -> Response:
        if receipts or changes:
            try:
                # The sink blocks (a broker round trip); the event loop keeps serving meanwhile.
                await run_in_threadpool(sink.put, receipts, changes)
            except HandOffFailed as exc:
                log.error("webhook.hand_off_failed", provider=provider, request_id=request_id, error=str(exc))
                return JSONResponse(
                    {"error": "receipts not stored; send again"},
                    status_code=503,
                    headers={"Retry-After": "30", "X-Request-Id": request_id},
                )
        log.info(
            "webhook.accepted",
            provider=provider,
            request_id=request_id,
            receipts=len(receipts),
            changes=len(changes),
            skipped=skipped,
            provider_message_ids=sorted({receipt.provider_message_id for receipt in receipts})[:20],
        )
        body = {"receipts": len(receipts), "changes": len(changes), "skipped": sum(skipped.values())}
        return JSONResponse(body, headers={"X-Request-Id": request_id})

    async def signed_form(
        request: Request,
        provider: str,
        request_id: str,
        path: str,
        valid: Callable[[str, FormData, str | None], bool],
    ) -> FormData | Response:
        """The posted form once its signature holds for the registered URL; else the refusal to answer."""
        try:
            form = await _read_form(request)
        except _BodyTooLarge:
            return _refuse(provider, request_id, 413, TOO_LARGE)
        except InvalidWebhook as exc:
            return _refuse(provider, request_id, 400, str(exc))
        header = SIGNATURE_HEADERS[provider]
        given = request.headers.get(header)
        if not valid(config.signed_url(path, request.url.query), form, given):
            return _refuse(provider, request_id, 403, "signature missing" if not given else "signature wrong")
        return form

    async def mandrill(request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            return Response(status_code=200)
        request_id = uuid.uuid4().hex
        provider = mandrill_webhooks.PROVIDER

        def valid(url: str, form: FormData, given: str | None) -> bool:
            params = [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
            return mandrill_webhooks.signature_valid(mandrill_key, url, params, given)

        form = await signed_form(request, provider, request_id, MANDRILL_PATH, valid)
        if isinstance(form, Response):
            return form
        raw = form.get(mandrill_webhooks.EVENTS_FIELD)
        if not isinstance(raw, str):
            return _refuse(provider, request_id, 400, f"{mandrill_webhooks.EVENTS_FIELD}: is missing")
        try:
            batch = mandrill_webhooks.parse_events(raw, config.suppression_key)
        except InvalidWebhook as exc:
            return _refuse(provider, request_id, 400, str(exc))
        return await hand_off(provider, request_id, batch.receipts, batch.changes, dict(batch.skipped))

    async def twilio(request: Request) -> Response:
        request_id = uuid.uuid4().hex
        provider = twilio_callbacks.PROVIDER

        def valid(url: str, form: FormData, given: str | None) -> bool:
            return twilio_callbacks.signature_valid(twilio_token, url, form, given)

        form = await signed_form(request, provider, request_id, TWILIO_PATH, valid)
        if isinstance(form, Response):
            return form
        fields = {name: value for name, value in form.multi_items() if isinstance(value, str)}
        try:
            receipt = twilio_callbacks.parse_callback(fields, config.suppression_key, clock())
        except InvalidWebhook as exc:
            return _refuse(provider, request_id, 400, str(exc))
        return await hand_off(provider, request_id, [receipt], [], {})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [Route(HEALTH_PATH, healthz, methods=["GET"])]
    if mandrill_key:
        routes.append(Route(MANDRILL_PATH, mandrill, methods=["GET", "HEAD", "POST"]))
    if twilio_token:
        routes.append(Route(TWILIO_PATH, twilio, methods=["POST"]))
    return Starlette(routes=routes)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or a ConfigurationError in one line (port taken, no such address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        problem = exc.strerror or exc
        raise ConfigurationError(f"NOTIFY_WEBHOOKS_HOST: cannot use {host!r}: {problem}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"NOTIFY_WEBHOOKS_PORT: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.set_inheritable(True)
    return sock


def serve(config: ReceiverConfig, sink: ReceiptSink, sock: socket.socket) -> None:
    """Serve until SIGTERM or SIGINT (uvicorn finishes requests in flight, then returns)."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, sink),
            # Our logging (structured, masked) stays in charge; uvicorn's access log would print
            # every path and client address, and says nothing our own events do not.
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
        )
    )
    log.info("webhooks.listening", address="{}:{}".format(*sock.getsockname()[:2]))
    # uvicorn handles SIGTERM/SIGINT while it serves (finishing requests in flight), then raises the
    # signal again under the handlers it found. Quiet ones here make that a plain return: exit 0,
    # the sink closed, no KeyboardInterrupt traceback.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("webhooks.stopped")
