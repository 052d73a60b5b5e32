"""SMTP delivery with smtplib: STARTTLS or implicit TLS, AUTH, and connections reused across sends.

The worker runs sends on a thread pool, so connections live in a small pool: a send takes an idle
connection (or opens one), and gives it back when the exchange ended cleanly. A reused connection
the server has dropped in the meantime is replaced once, transparently.

Reply codes (RFC 5321 section 4.2.1): 4yz is a transient negative completion (retry later), 5yz a
permanent one (give up); 530 "authentication required" and 535 "authentication credentials invalid"
(RFC 4954 section 6) mean our settings are wrong.

What goes on the wire depends on what the server offers in its EHLO reply: with 8BITMIME (RFC 6152)
bodies go as 8-bit and MAIL FROM says ``BODY=8BITMIME``; without it every body part gets a 7-bit
transfer encoding (quoted-printable or base64). IDN domains travel as punycode. A non-ASCII local
part (intake refuses them, so only a direct caller can bring one) needs SMTPUTF8 (RFC 6531); a
server without it gets no attempt, and the message fails with that reason.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from dataclasses import dataclass
from typing import NoReturn

from workers.errors import GiveUp, MaybeDelivered, ProviderMisconfigured, RetryLater
from workers.messages import EmailMessage, Receipt
from workers.providers.addresses import has_ascii_local_parts, with_ascii_domains
from workers.providers.base import Probe
from workers.providers.mime import build_mime
from workers.providers.redact import redact

NAME = "smtp"
AUTH_CODES = frozenset({530, 534, 535, 538})

log = logging.getLogger(__name__)


def classify_reply(code: int, text: str | bytes, *, stage: str) -> NoReturn:
    """Raise our error for an SMTP negative reply ``code`` received at ``stage`` (MAIL, RCPT, DATA...)."""
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    detail = f"smtp: {stage} refused with {code} {redact(reply)}"
    if code in AUTH_CODES:
        raise ProviderMisconfigured(detail, provider=NAME, code=str(code))
    if 400 <= code < 500:
        raise RetryLater(detail, provider=NAME, code=str(code))
    if 500 <= code < 600:
        raise GiveUp(detail, provider=NAME, code=str(code))
    # Anything else is a broken exchange, not an answer about this message.
    raise RetryLater(detail, provider=NAME, code=str(code))


class _Dropped(Exception):
    """The server closed a connection mid-exchange."""


@dataclass(frozen=True, slots=True)
class _Envelope:
    """One message serialised for one server's extensions: the DATA bytes and the MAIL FROM options."""

    payload: bytes
    mail_options: tuple[str, ...]
    message_id: str | None


class SmtpProvider:
    """Sends email over SMTP; ``max_idle`` connections are kept open between sends."""

    name = NAME

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str = "",
        password: str = "",
        starttls: bool = True,
        implicit_tls: bool = False,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        message_id_domain: str = "",
        max_idle: int = 4,
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._starttls = starttls and not implicit_tls
        self._implicit_tls = implicit_tls
        self._timeout = timeout
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._local_hostname = local_hostname
        self._domain = message_id_domain
        self._max_idle = max_idle
        self._idle: list[smtplib.SMTP] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"SmtpProvider(host={self._host!r}, port={self._port})"

    # --- connections ---------------------------------------------------------------------------

    def _connect(self, timeout: float) -> smtplib.SMTP:
        """A connection ready for MAIL: greeted, EHLO, STARTTLS and login as configured.

        Raises what smtplib and ssl raise: sends map it onto our errors (``_open``), a probe
        reports it as it is.
        """
        conn: smtplib.SMTP
        if self._implicit_tls:
            conn = smtplib.SMTP_SSL(
                self._host,
                self._port,
                local_hostname=self._local_hostname,
                timeout=timeout,
                context=self._ssl_context,
            )
        else:
            conn = smtplib.SMTP(self._host, self._port, local_hostname=self._local_hostname, timeout=timeout)
        try:
            conn.ehlo()
            if self._starttls:
                conn.starttls(context=self._ssl_context)
                conn.ehlo()
            if self._username:
                conn.login(self._username, self._password)
        except BaseException:
            _quietly_close(conn)
            raise
        return conn

    def _open(self) -> smtplib.SMTP:
        try:
            return self._connect(self._timeout)
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderMisconfigured(
                f"smtp: authentication failed with {exc.smtp_code}", provider=NAME, code=str(exc.smtp_code)
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise ProviderMisconfigured(
                f"smtp: server does not support {redact(str(exc))}; "
                "check SMTP_STARTTLS, SMTP_SSL and SMTP_USERNAME",
                provider=NAME,
                code="not-supported",
            ) from None
        except smtplib.SMTPResponseException as exc:
            classify_reply(exc.smtp_code, exc.smtp_error, stage="connection")
        except ssl.SSLCertVerificationError as exc:
            raise ProviderMisconfigured(
                f"smtp: TLS certificate not trusted ({exc.verify_message})", provider=NAME, code="tls"
            ) from None
        except ssl.SSLError as exc:
            raise RetryLater(
                f"smtp: TLS handshake failed ({exc.reason})", provider=NAME, code="tls"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            # Refused, reset, timed out, or closed during the greeting: the server may come back.
            raise RetryLater(
                f"smtp: cannot connect ({type(exc).__name__})", provider=NAME, code="connection"
            ) from None

    def _take(self) -> tuple[smtplib.SMTP, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._open(), False

    def _give_back(self, conn: smtplib.SMTP) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        _quietly_close(conn)

    # --- sending -------------------------------------------------------------------------------

    def send_email(self, message: EmailMessage) -> Receipt:
        if message.template is not None and message.text is None and message.html is None:
            raise ProviderMisconfigured(
                "smtp: cannot render a Mandrill stored template; set NOTIFY_MANDRILL_TEMPLATES=local",
                provider=NAME,
                code="stored-template",
            )
        message = with_ascii_domains(message, provider=NAME)
        conn, reused = self._take()
        try:
            envelope = self._envelope(conn, message)
            self._exchange(conn, message, envelope)
        except _Dropped:
            _quietly_close(conn)
            if not reused:
                raise RetryLater(
                    "smtp: server closed the connection", provider=NAME, code="connection"
                ) from None
            # The pooled connection had gone stale while idle: one fresh connection, one more try.
            log.info("smtp connection was dropped by the server; reconnecting once")
            conn = self._open()
            try:
                envelope = self._envelope(conn, message)
                self._exchange(conn, message, envelope)
            except _Dropped:
                _quietly_close(conn)
                raise RetryLater(
                    "smtp: server closed the connection", provider=NAME, code="connection"
                ) from None
            except BaseException:
                _quietly_close(conn)
                raise
        except BaseException:
            _quietly_close(conn)
            raise
        self._give_back(conn)
        log.debug("smtp accepted notification %s", message.notification_id)
        return Receipt(provider=NAME, provider_message_id=envelope.message_id)

    def _envelope(self, conn: smtplib.SMTP, message: EmailMessage) -> _Envelope:
        """``message`` as this server can take it (see the module docstring); GiveUp if it cannot."""
        utf8 = not has_ascii_local_parts(message)
        if utf8 and not conn.has_extn("smtputf8"):
            raise GiveUp(
                "smtp: an address has a non-ASCII local part and the server does not offer SMTPUTF8",
                provider=NAME,
                code="smtputf8",
            )
        # RFC 6531 section 3.1: a server offering SMTPUTF8 takes 8-bit bodies as well.
        eight_bit = utf8 or conn.has_extn("8bitmime")
        options: list[str] = []
        if eight_bit:
            options.append("BODY=8BITMIME")
        if utf8:
            options.append("SMTPUTF8")
        try:
            mime = build_mime(message, domain=self._domain, eight_bit=eight_bit, utf8=utf8)
            # CRLF line ends: smtplib fixes bare LFs in str messages but sends bytes verbatim, and a
            # server reads an LF-only message as one over-long line.
            payload = mime.as_bytes(linesep="\r\n")
        except (ValueError, TypeError) as exc:
            raise GiveUp(
                f"smtp: message cannot be encoded ({redact(str(exc))})", provider=NAME, code="encoding"
            ) from None
        return _Envelope(payload, tuple(options), mime.message_id)

    def _exchange(self, conn: smtplib.SMTP, message: EmailMessage, envelope: _Envelope) -> None:
        """One MAIL/RCPT/DATA transaction, its failures mapped onto our errors (or ``_Dropped``)."""
        try:
            conn.sendmail(
                message.from_address,
                [message.to_address],
                envelope.payload,
                mail_options=list(envelope.mail_options),
            )
        except smtplib.SMTPServerDisconnected as exc:
            # smtplib reports a read timeout as a disconnect; a slow server may still deliver, so a
            # timeout is never resent on a new connection here, unlike a real drop.
            if isinstance(exc.__context__, TimeoutError):
                raise MaybeDelivered(
                    "smtp: timed out waiting for the server", provider=NAME, code="timeout"
                ) from None
            raise _Dropped() from None
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            classify_reply(code, text, stage="RCPT")
        except smtplib.SMTPSenderRefused as exc:
            classify_reply(exc.smtp_code, exc.smtp_error, stage="MAIL")
        except smtplib.SMTPDataError as exc:
            classify_reply(exc.smtp_code, exc.smtp_error, stage="DATA")
        except smtplib.SMTPResponseException as exc:
            classify_reply(exc.smtp_code, exc.smtp_error, stage="SMTP")
        except ConnectionError:
            raise _Dropped() from None
        except TimeoutError:
            raise MaybeDelivered(
                "smtp: timed out waiting for the server", provider=NAME, code="timeout"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise RetryLater(
                f"smtp: exchange failed ({type(exc).__name__})", provider=NAME, code="connection"
            ) from None

    def probe(self, timeout: float) -> Probe:
        """Connect, EHLO, STARTTLS and log in as configured, NOOP, QUIT: a send's path minus the mail."""
        where = f"{self._host}:{self._port}"
        try:
            conn = self._connect(timeout)
            try:
                code, _ = conn.noop()
            finally:
                _quietly_close(conn)
        except (smtplib.SMTPException, OSError) as exc:
            return Probe.failed(exc, where=where)
        if code != 250:
            return Probe(False, f"{where}: NOOP answered {code}")
        return Probe(True, f"{where} answers EHLO and NOOP")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _quietly_close(conn)


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()
