"""A local SMTP server (aiosmtpd) that records messages and can refuse, stall or drop on demand.

Run in-process (``with SmtpServer() as server: ... server.host, server.port``) or as a program:
``python -m tests.fakes.smtp_server --port 8027 [--user u --password p]``.

Faults apply to the next transactions in order: ``Reply(stage, code, text)`` answers MAIL, RCPT or
DATA with that code; ``DropAt(stage)`` closes the connection at that stage; ``Stall(seconds)``
delays the DATA reply. ``set_failure_rate`` answers a seeded share of DATA commands with 451 or
stalls them. ``drop_idle_connections`` closes every open session, as servers do to idle clients.

It is strict where real servers differ: ``eight_bit_mime=False`` leaves 8BITMIME out of the EHLO
reply, and ``smtputf8=True`` offers SMTPUTF8. DATA holding 8-bit bytes is refused (554) unless MAIL
FROM declared ``BODY=8BITMIME`` on a server offering it (RFC 6152 section 3); a non-ASCII address
is refused unless MAIL FROM declared ``SMTPUTF8`` on a server offering it (RFC 6531 section 3.4).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage as MimeMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.fakes.program import serve_until_stopped


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer ``stage`` ("MAIL", "RCPT" or "DATA") with ``code`` and ``text``."""

    stage: str
    code: int
    text: str = "simulated reply"


@dataclass(frozen=True, slots=True)
class DropAt:
    """Close the connection when the client reaches ``stage`` (no reply at all)."""

    stage: str = "DATA"


@dataclass(frozen=True, slots=True)
class Stall:
    """Hold the DATA reply for ``seconds`` (the message is then accepted)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()

    @property
    def message(self) -> MimeMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, MimeMessage)
        return parsed


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.owner._seen(server)
        if not self.owner.eight_bit_mime:
            responses = [line for line in responses if line[4:].upper() != "8BITMIME"]
        return responses

    async def _fault(self, server: SMTP, stage: str) -> str | None:
        fault = self.owner._take_fault(stage)
        if isinstance(fault, Reply):
            return f"{fault.code} {fault.text}"
        if isinstance(fault, DropAt):
            transport = server.transport
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return "421 closing"  # never seen by the client: the transport is gone
        if isinstance(fault, Stall):
            await asyncio.sleep(fault.seconds)
        return None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        refused = await self._fault(server, "MAIL")
        if refused:
            return refused
        options = {option.upper() for option in mail_options}
        if "BODY=8BITMIME" in options and not self.owner.eight_bit_mime:
            return "555 5.5.4 BODY=8BITMIME is not offered here"
        if not address.isascii() and "SMTPUTF8" not in options:
            return "553 5.6.7 a non-ASCII address needs SMTPUTF8"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refused = await self._fault(server, "RCPT")
        if refused:
            return refused
        if not address.isascii() and "SMTPUTF8" not in {o.upper() for o in envelope.mail_options}:
            return "553 5.6.7 a non-ASCII address needs SMTPUTF8"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refused = await self._fault(server, "DATA")
        if refused:
            return refused
        content = envelope.original_content or b""
        declared = {option.upper() for option in envelope.mail_options}
        if not content.isascii() and "BODY=8BITMIME" not in declared:
            return "554 5.6.1 8-bit data without BODY=8BITMIME"
        self.owner._record(
            ReceivedMail(
                str(envelope.mail_from), tuple(envelope.rcpt_tos), content, tuple(envelope.mail_options)
            )
        )
        return "250 Message accepted for delivery"


def _free_port(host: str) -> int:
    # aiosmtpd's Controller checks readiness by connecting to its port, so it needs a real one.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class SmtpServer:
    """aiosmtpd on a background thread; ``received`` holds every accepted message."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls_context: ssl.SSLContext | None = None,
        implicit_tls_context: ssl.SSLContext | None = None,
        eight_bit_mime: bool = True,
        smtputf8: bool = False,
    ) -> None:
        self.host = host
        self.eight_bit_mime = eight_bit_mime
        self.smtputf8 = smtputf8
        self.port = port
        self._username = username
        self._password = password
        self._starttls_context = starttls_context
        self._implicit_tls_context = implicit_tls_context
        self._controller: Controller | None = None
        self._lock = threading.Lock()
        self._received: list[ReceivedMail] = []
        self._faults: deque[Any] = deque()
        self._sessions: set[SMTP] = set()
        self.connections_opened = 0  # SMTP sessions seen so far: shows connection reuse at work
        self._error_rate = 0.0
        self._timeout_rate = 0.0
        self._timeout_delay = 30.0
        self._rng = random.Random(0)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self._username
            and auth_data.password.decode() == self._password
        )
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    def start(self) -> SmtpServer:
        if not self.port:
            self.port = _free_port(self.host)
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port, "enable_SMTPUTF8": self.smtputf8}
        if self._username is not None:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self._starttls_context is not None,
            )
        if self._starttls_context is not None:
            kwargs.update(tls_context=self._starttls_context, require_starttls=True)
        if self._implicit_tls_context is not None:
            kwargs.update(ssl_context=self._implicit_tls_context)
        self._controller = Controller(_Handler(self), **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def received(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._received)

    def fail_next(self, *faults: Any) -> None:
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
        """Answer ``error_rate`` of DATA commands with 451 and stall ``timeout_rate`` of them."""
        with self._lock:
            self._error_rate, self._timeout_rate = error_rate, timeout_rate
            self._timeout_delay = timeout_delay
            self._rng = random.Random(seed)

    def reset(self) -> None:
        with self._lock:
            self._received.clear()
            self._faults.clear()
            self._error_rate = self._timeout_rate = 0.0

    def drop_idle_connections(self) -> None:
        controller = self._controller
        if controller is None:
            return
        sessions, self._sessions = list(self._sessions), set()
        for session in sessions:
            if session.transport is not None:
                controller.loop.call_soon_threadsafe(session.transport.close)

    def _take_fault(self, stage: str) -> Any:
        with self._lock:
            if self._faults:
                head = self._faults[0]
                if getattr(head, "stage", "DATA") == stage:
                    return self._faults.popleft()
                return None
            if stage == "DATA" and (self._error_rate or self._timeout_rate):
                draw = self._rng.random()
                if draw < self._error_rate:
                    return Reply("DATA", 451, "4.3.0 simulated failure")
                if draw < self._error_rate + self._timeout_rate:
                    return Stall(self._timeout_delay)
        return None

    def _seen(self, session: SMTP) -> None:
        with self._lock:
            if session not in self._sessions and not getattr(session, "_notify_counted", False):
                session._notify_counted = True  # type: ignore[attr-defined]  # EHLO repeats after STARTTLS
                self.connections_opened += 1
            self._sessions.add(session)

    def _record(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._received.append(mail)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local SMTP server (aiosmtpd) for tests and demos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", default=None)
    parser.add_argument("--password", default=None)
    args = parser.parse_args(argv)
    server = SmtpServer(args.host, args.port, username=args.user, password=args.password)
    serve_until_stopped(
        server, lambda: f"SMTP_HOST={server.host} SMTP_PORT={server.port} SMTP_STARTTLS=false"
    )


if __name__ == "__main__":
    main()
