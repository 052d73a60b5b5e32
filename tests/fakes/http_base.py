"""A local HTTP/1.1 keep-alive server on a background thread that records requests and injects faults.

The Mandrill and Twilio servers build on it: they say how to answer a request; this module owns
the socket, the thread, the recording, the scripted faults (``fail_next``), the seeded failure-rate
mode (``set_failure_rate``), a fixed reply delay for every request (``set_reply_delay``), an answer
held back until the test releases it (``HoldAnswer``) and a JSON control API under ``/_control/``
for out-of-process use.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl

CONTROL_PREFIX = "/_control/"


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection without answering."""


@dataclass(frozen=True, slots=True)
class Delay:
    """Answer normally, but only after ``seconds`` (cut short when the server stops)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Hang:
    """Wait ``seconds`` (longer than the client's timeout), then close without delivering."""

    seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class HoldAnswer:
    """Handle the request now (its webhooks go out), but hold the answer until ``release`` is set.

    A provider whose receipt reaches the receiver before the send's answer reaches the sender;
    the hold ends anyway after ``seconds`` or when the server stops.
    """

    release: threading.Event
    seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Status:
    """Answer with HTTP ``status`` in the protocol's own error format, with an optional Retry-After."""

    status: int
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """One API request as the server saw it (the Authorization header is kept: tests check it)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        merged = {"Content-Type": "application/json", **(headers or {})}
        return cls(status, json.dumps(payload).encode(), merged)


@dataclass(frozen=True, slots=True)
class Received:
    """A recorded request and what the server did: ``status`` is None when it answered nothing.

    ``at`` is when the request arrived (epoch seconds), for a benchmark in another process."""

    request: Request
    status: int | None
    accepted: bool
    at: float = 0.0

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def json(self) -> Any:
        return self.request.json

    @property
    def form(self) -> dict[str, str]:
        return self.request.form


DROP = Reply(-1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalHttpServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-conversation (bench/scale.py SIGKILLs a worker) resets its kept-alive
        # connections: an ordinary day for a provider, not a traceback on the benchmark's stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the production clients expect
    disable_nagle_algorithm = True  # headers and body go out in two writes; avoid the delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines would put numbers and addresses into test output."""

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, {k: v for k, v in self.headers.items()}, body)
        reply = self.server.owner._route(request)
        if reply is DROP:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True


class LocalHttpServer:
    """Base of the local provider servers; subclasses implement ``handle`` and ``error_reply``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._faults: deque[Any] = deque()
        self._received: list[Received] = []
        self._connections: set[socket.socket] = set()
        self.connections_opened = 0  # TCP connections accepted so far: shows keep-alive at work
        self._error_rate = 0.0
        self._timeout_rate = 0.0
        self._timeout_delay = 30.0
        self._reply_delay = 0.0
        self._rng = random.Random(0)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalHttpServer:
        server = _Server((self._host, self._port), _Handler)
        server.owner = self
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed replies
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self.drop_idle_connections()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    # --- recording and faults ------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def accepted(self) -> list[Received]:
        """The requests that the server accepted (a message was 'sent')."""
        return [item for item in self.received if item.accepted]

    def fail_next(self, *faults: Any) -> None:
        """Answer the next requests with these faults, one each, in order."""
        with self._lock:
            self._faults.extend(faults)

    def set_failure_rate(
        self,
        *,
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        seed: int = 0,
        timeout_delay: float = 30.0,
    ) -> None:
        """From now on fail ``error_rate`` of requests with a 500 and ``timeout_rate`` by hanging."""
        with self._lock:
            self._error_rate, self._timeout_rate = error_rate, timeout_rate
            self._timeout_delay = timeout_delay
            self._rng = random.Random(seed)

    def set_reply_delay(self, seconds: float) -> None:
        """From now on answer every API request only after ``seconds`` (a provider's own latency)."""
        with self._lock:
            self._reply_delay = max(seconds, 0.0)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._received.clear()
            self._error_rate = self._timeout_rate = 0.0
            self._reply_delay = 0.0

    def drop_idle_connections(self) -> None:
        """Close every open client connection, as a server or load balancer does to idle ones."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)
            self.connections_opened += 1

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _next_fault(self) -> Any:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            draw = self._rng.random()
            if draw < self._error_rate:
                return Status(500)
            if draw < self._error_rate + self._timeout_rate:
                return Hang(self._timeout_delay)
        return None

    def _route(self, request: Request) -> Reply:
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        arrived = time.time()
        fault = self._next_fault()
        reply, accepted = self._apply(request, fault)
        with self._lock:
            self._received.append(
                Received(request, None if reply is DROP else reply.status, accepted, arrived)
            )
        return reply

    def _apply(self, request: Request, fault: Any) -> tuple[Reply, bool]:
        if isinstance(fault, Drop):
            return DROP, False
        if isinstance(fault, Hang):
            self._stopping.wait(fault.seconds)
            return DROP, False
        if isinstance(fault, Delay):
            self._stopping.wait(fault.seconds)
            fault = None
        if isinstance(fault, Status):
            return self.error_reply(fault.status, fault.retry_after), False
        if isinstance(fault, HoldAnswer):
            answer = self.handle(request, None)
            deadline = time.monotonic() + fault.seconds
            while not fault.release.wait(0.05):
                if self._stopping.is_set() or time.monotonic() > deadline:
                    break
            return answer
        if self._reply_delay:
            self._stopping.wait(self._reply_delay)
        return self.handle(request, fault)

    # --- protocol hooks ------------------------------------------------------------------------

    def handle(self, request: Request, fault: Any) -> tuple[Reply, bool]:
        """The protocol's answer to ``request`` (with a protocol-specific ``fault`` or None)."""
        raise NotImplementedError

    def error_reply(self, status: int, retry_after: float | None) -> Reply:
        """A generic HTTP error in the protocol's own format."""
        raise NotImplementedError

    def fault_from_json(self, spec: Mapping[str, Any]) -> Any:
        """A fault from its control-API form: ``{"kind": "drop"|"delay"|"hang"|"status", ...}``."""
        kind = spec.get("kind")
        if kind == "drop":
            return Drop()
        if kind == "delay":
            return Delay(float(spec["seconds"]))
        if kind == "hang":
            return Hang(float(spec.get("seconds", 30.0)))
        if kind == "status":
            retry_after = spec.get("retry_after")
            return Status(int(spec["status"]), float(retry_after) if retry_after is not None else None)
        raise ValueError(f"unknown fault kind {kind!r}")

    # --- control API ---------------------------------------------------------------------------

    def _control(self, request: Request) -> Reply:
        action, _, query = request.path[len(CONTROL_PREFIX) :].partition("?")
        try:
            if action == "received" and request.method == "GET":
                # ?since=N: only the requests after the first N, so a poller reads each one once.
                since = int(parse_qs(query).get("since", ["0"])[0])
                items = [
                    {
                        "method": r.request.method,
                        "path": r.path,
                        "status": r.status,
                        "accepted": r.accepted,
                        "at": r.at,
                        "body": r.request.body.decode("utf-8", "replace"),
                    }
                    for r in self.received[since:]
                ]
                return Reply.of_json(200, items)
            if action == "reset" and request.method == "POST":
                self.reset()
                return Reply.of_json(200, {"ok": True})
            if action == "fail" and request.method == "POST":
                self.fail_next(*(self.fault_from_json(spec) for spec in request.json["faults"]))
                return Reply.of_json(200, {"ok": True})
            if action == "reply-delay" and request.method == "POST":
                self.set_reply_delay(float(request.json["seconds"]))
                return Reply.of_json(200, {"ok": True})
            if action == "failure-rate" and request.method == "POST":
                spec = request.json
                self.set_failure_rate(
                    error_rate=float(spec.get("error_rate", 0.0)),
                    timeout_rate=float(spec.get("timeout_rate", 0.0)),
                    seed=int(spec.get("seed", 0)),
                    timeout_delay=float(spec.get("timeout_delay", 30.0)),
                )
                return Reply.of_json(200, {"ok": True})
        except (KeyError, TypeError, ValueError) as exc:
            return Reply.of_json(400, {"error": str(exc)})
        return Reply.of_json(404, {"error": f"no control action {action!r}"})
