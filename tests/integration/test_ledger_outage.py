"""PostgreSQL refuses connections while a real worker holds providers' answers: none becomes `unknown`.

A real `notify worker` (threads pool) takes events from RabbitMQ and keeps its ledger in PostgreSQL
behind a small TCP proxy the test controls. The local Mandrill server answers each send after one
second. While sends are in flight the proxy is stopped for four seconds (every open connection
cut, new ones refused), then started again on the same port. What the server accepted is the
ground truth: each accepted notification must end `sent` with the message id the server gave it,
and no notification may be accepted twice (the retry is of the ledger write, never of the send).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from tests.conftest import RABBITMQ_URL
from tests.factories import basic_email
from tests.fakes.http_base import Reply, Request
from tests.fakes.mandrill_server import MandrillServer
from tests.integration.harness import WorkerProcess, isolated_env, publish_raw, wait_for
from workers.ledger import make_engine
from workers.ledger.models import Notification
from workers.messages import Status

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq, pytest.mark.postgres]

EVENTS = 24
KEY = "outage-key"
OUTAGE = 4.0


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``stop`` cuts every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            open_sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class IdRecordingMandrill(MandrillServer):
    """The local Mandrill server, also noting the message id it answered for each notification."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answered: dict[str, list[str]] = {}

    def handle(self, request: Request, fault: Any) -> tuple[Reply, bool]:
        reply, accepted = super().handle(request, fault)
        if accepted:
            notification_id = request.json["message"]["metadata"]["notification_id"]
            with self._lock:
                self.answered.setdefault(notification_id, []).extend(r["_id"] for r in json.loads(reply.body))
        return reply, accepted


def test_a_database_outage_mid_send_keeps_every_provider_answer(tmp_path: Path, postgres_url: str) -> None:
    url = make_url(postgres_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432)).start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    engine = make_engine(postgres_url)  # the test's own view, not through the proxy
    try:
        with IdRecordingMandrill(api_keys={KEY}) as mandrill:
            assert isinstance(mandrill, IdRecordingMandrill)
            mandrill.set_reply_delay(1.0)
            env = isolated_env(
                tmp_path,
                broker_url=RABBITMQ_URL,
                database_url=proxied,
                NOTIFY_EMAIL_PROVIDER="mandrill",
                MANDRILL_BASE_URL=mandrill.api_url,
                MANDRILL_API_KEY=KEY,
                NOTIFY_SWEEP_INTERVAL="1",
                # Short, so that on the old code the sweeper soon calls the unwritten rows `unknown`;
                # but longer than the ledger retries' reach over the outage (0.5+1+2+4+8 s), as in
                # production (600 s against a 10 s cap): a claim whose answer the cut lost is taken
                # back by the task's retry under the same token before the sweeper gives up on it.
                NOTIFY_SENDING_TIMEOUT="16",
                NOTIFY_STUCK_AFTER="5",
            )
            events = [basic_email(subject=f"Outage {n}") for n in range(EVENTS)]
            ids = [event["core"]["id"] for event in events]
            worker = WorkerProcess(
                env, tmp_path / "worker.log", args=("--pool", "threads", "--concurrency", "6")
            )
            with worker:
                publish_raw(
                    worker.settings,
                    [(json.dumps(e).encode(), "application/json", "events.BasicEmail") for e in events],
                )
                # Every event is in the ledger, and then a send reaches the provider: its answer
                # (a second away) is in the worker's hands while the database is cut. Waiting for a
                # send after the last row, not just for any three sends, matters on a loaded
                # machine: when intake lags, the first sends are answered and written before the
                # last rows land, and a cut right then finds no answer in hand (a CI run did).
                deadline = time.monotonic() + 60
                while _rows(engine) < EVENTS:
                    assert worker.alive() and time.monotonic() < deadline, worker.log()[-3000:]
                    time.sleep(0.02)
                seen = len(mandrill.received)
                while len(mandrill.received) <= seen:
                    assert worker.alive() and time.monotonic() < deadline, worker.log()[-3000:]
                    time.sleep(0.01)
                proxy.stop()
                time.sleep(OUTAGE)
                proxy.start()
                rows = wait_for(worker.settings, ids, worker=worker, timeout=120)
                # Give a late duplicate send, if any, the time to reach the server.
                time.sleep(1.0)
            log = worker.log()
            answered = dict(mandrill.answered)
    finally:
        proxy.stop()
        engine.dispose()

    accepted = Counter({i: len(found) for i, found in answered.items()})
    assert set(accepted) == set(ids), "every notification reached the provider"
    assert {i: n for i, n in accepted.items() if n > 1} == {}, "a notification was sent twice"
    by_status = Counter(row.status.value if row else None for row in rows.values())
    assert by_status == {Status.SENT.value: EVENTS}, (by_status, log[-4000:])
    for notification_id, row in rows.items():
        assert row is not None and row.provider_message_id == answered[notification_id][0]
    # The outage really hit writes of answers in hand, and each is logged with its id.
    unrecorded = [json.loads(line) for line in log.splitlines() if '"deliver.unrecorded"' in line]
    assert unrecorded, log[-4000:]
    assert all(entry["notification_id"] in ids and entry["provider_message_id"] for entry in unrecorded)


def _rows(engine: Any) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(Notification.id)).all())
