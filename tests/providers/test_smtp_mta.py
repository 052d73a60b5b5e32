"""The SMTP provider against a real MTA: Debian's exim4, started on loopback ports with a throwaway config.

The fake SMTP servers check what we put on the wire; this checks it against a server we did not
write. Exim is started once per module, as a foreground daemon (``-bdf``) with its own spool, log and
a self-signed certificate, on two free ports of 127.0.0.1. It offers STARTTLS, 8BITMIME and SMTPUTF8,
and AUTH only after TLS: PLAIN and LOGIN on the first port, LOGIN alone on the second (smtplib
prefers PLAIN, so the second port is how LOGIN gets exercised). It delivers mail for its local
domains into a maildir that the tests read back.

Without exim4 the tests skip and say so; under CI=true they fail instead (.ci/run installs it).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from pathlib import Path

import pytest
from conftest import make_email

from tests.conftest import IN_CI
from workers.errors import ProviderMisconfigured
from workers.messages import EmailMessage
from workers.providers.smtp import SmtpProvider

USER, PASSWORD = "notify", "s3cret"
LOCAL_DOMAINS = ("example.org", "notify.example.com", "xn--mnchen-3ya.example")
START_TIMEOUT = 30.0
DELIVERY_TIMEOUT = 30.0

# @NAME@ placeholders are filled in by the fixture (exim syntax is full of braces).
CONFIG = """\
primary_hostname = mta.test
spool_directory = @DIR@/spool
log_file_path = @DIR@/log/%slog
pid_file_path = @DIR@/exim.pid
daemon_smtp_ports = @PLAIN_PORT@ : @LOGIN_PORT@
local_interfaces = <; 127.0.0.1
domainlist local_domains = @DOMAINS@
log_selector = +8bitmime +received_recipients
tls_advertise_hosts = *
tls_certificate = @DIR@/cert.pem
tls_privatekey = @DIR@/key.pem
accept_8bitmime = true
smtputf8_advertise_hosts = *
host_lookup =
rfc1413_hosts =
acl_smtp_mail = acl_check_mail
acl_smtp_rcpt = acl_check_rcpt
acl_smtp_data = acl_check_data

begin acl
acl_check_mail:
  deny   !authenticated = *
         message = 530 authentication required
  accept
acl_check_rcpt:
  accept authenticated = *
         domains = +local_domains
  deny   message = relay not permitted
acl_check_data:
  accept add_header = X-Test-Smtputf8: ${if bool_lax{$message_smtputf8}{yes}{no}}

begin routers
local_maildir:
  driver = accept
  domains = +local_domains
  transport = maildir

begin transports
maildir:
  driver = appendfile
  directory = @DIR@/maildir
  maildir_format = true
  envelope_to_add
  return_path_add
  # With -C exim gives up root before delivering, so it delivers as its own user.
  user = ${exim_uid}
  group = ${exim_gid}

begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_advertise_condition = ${if and{{def:tls_in_cipher}{eq{$received_port}{@PLAIN_PORT@}}}}
  server_condition = ${if and{{eq{$auth2}{@USER@}}{eq{$auth3}{@PASSWORD@}}}}
  server_set_id = $auth2
login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_advertise_condition = ${if def:tls_in_cipher}
  server_condition = ${if and{{eq{$auth1}{@USER@}}{eq{$auth2}{@PASSWORD@}}}}
  server_set_id = $auth1
"""


@dataclass(frozen=True)
class Exim:
    """A running exim daemon: where to connect, what it trusts, where its mail and log land."""

    plain_port: int
    login_port: int
    cert: Path
    maildir: Path
    mainlog: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def provider(self, port: int, *, password: str = PASSWORD) -> SmtpProvider:
        return SmtpProvider(
            "127.0.0.1",
            port,
            username=USER,
            password=password,
            starttls=True,
            ssl_context=self.client_context(),
            timeout=10,
        )

    def delivered(self, message_id: str) -> MimeMessage:
        """The message with ``message_id`` from the maildir, once exim has delivered it."""
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while time.monotonic() < deadline:
            for path in (self.maildir / "new").glob("*"):
                parsed = message_from_bytes(path.read_bytes(), policy=policy.SMTPUTF8)
                assert isinstance(parsed, MimeMessage)
                if parsed["Message-ID"] == message_id:
                    return parsed
            time.sleep(0.1)
        raise AssertionError(f"exim did not deliver {message_id}; its log:\n{self.log()}")

    def raw(self, message_id: str) -> bytes:
        """The delivered file's bytes, headers as they arrived (UTF-8 ones included, RFC 6532)."""
        self.delivered(message_id)
        marker = f"Message-ID: {message_id}".encode()
        return next(p.read_bytes() for p in (self.maildir / "new").glob("*") if marker in p.read_bytes())

    def log(self) -> str:
        return self.mainlog.read_text(encoding="utf-8", errors="replace") if self.mainlog.exists() else ""

    def reception(self, message_id: str) -> str:
        """Exim's log line for receiving ``message_id`` (``<=``, with AUTH, TLS and 8BITMIME fields)."""
        wanted = f"id={message_id.strip('<>')}"
        lines = [line for line in self.log().splitlines() if " <= " in line and wanted in line]
        assert len(lines) == 1, self.log()
        return lines[0]


def _fill(template: str, **values: str) -> str:
    for name, value in values.items():
        template = template.replace(f"@{name}@", value)
    return template


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason}; CI must run the real-MTA tests (.ci/run installs exim4)", pytrace=False)
    pytest.skip(reason)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _certificate(directory: Path) -> None:
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")),
        ],
        check=True,
        capture_output=True,
    )
    # Exim reads the key after dropping to its own user; the key is a throwaway for this test.
    (directory / "key.pem").chmod(0o644)


@pytest.fixture(scope="module")
def exim() -> Iterator[Exim]:
    binary = shutil.which("exim4") or shutil.which("exim")
    if binary is None:
        _unavailable("exim4 is not installed (apt-get install exim4-daemon-light)")
    assert binary is not None
    if shutil.which("openssl") is None:
        _unavailable("openssl is not installed; it makes the MTA's test certificate")
    # Exim works as its own user after start-up, so its folder must be reachable by that user:
    # pytest's tmp_path sits under a root-only folder, hence a folder of our own in the temp dir.
    with tempfile.TemporaryDirectory(prefix="notify-exim-") as name:
        directory = Path(name)
        directory.chmod(0o755)
        yield from _run_exim(binary, directory)


def _run_exim(binary: str, directory: Path) -> Iterator[Exim]:
    for name in ("spool", "log", "maildir"):
        (directory / name).mkdir()
        (directory / name).chmod(0o777)
    _certificate(directory)
    plain_port, login_port = _free_ports(2)
    config = directory / "exim.conf"
    config.write_text(
        _fill(
            CONFIG,
            DIR=str(directory),
            PLAIN_PORT=str(plain_port),
            LOGIN_PORT=str(login_port),
            DOMAINS=" : ".join(LOCAL_DOMAINS),
            USER=USER,
            PASSWORD=PASSWORD,
        ),
        encoding="utf-8",
    )
    output = directory / "daemon.out"
    with output.open("wb") as sink:
        daemon = subprocess.Popen([binary, "-C", str(config), "-bdf"], stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (_listening(plain_port) and _listening(login_port)):
            if daemon.poll() is not None or time.monotonic() > deadline:
                panic = directory / "log" / "paniclog"
                details = output.read_text(errors="replace")
                details += panic.read_text(errors="replace") if panic.exists() else ""
                _unavailable(f"exim4 did not start on 127.0.0.1:{plain_port}: {details.strip()[-500:]}")
            time.sleep(0.1)
        yield Exim(
            plain_port=plain_port,
            login_port=login_port,
            cert=directory / "cert.pem",
            maildir=directory / "maildir",
            mainlog=directory / "log" / "mainlog",
        )
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def _send(exim: Exim, port: int, message: EmailMessage) -> str:
    provider = exim.provider(port)
    try:
        receipt = provider.send_email(message)
    finally:
        provider.close()
    return receipt.provider_message_id


def test_starttls_auth_plain_delivers_the_message_intact(exim: Exim) -> None:
    message = make_email("0b7f3c2e-1d4a-4e5f-8a6b-7c8d9e0f1a21")
    message_id = _send(exim, exim.plain_port, message)
    line = exim.reception(message_id)
    assert " A=plain:notify " in line  # AUTH PLAIN, as user notify
    assert " X=TLS" in line  # after STARTTLS
    assert " M8S=8 " in line  # MAIL FROM declared BODY=8BITMIME, which exim offered
    delivered = exim.delivered(message_id)
    assert delivered["Envelope-to"] == "reader@example.org"
    assert delivered["Return-path"] == "<alerts@notify.example.com>"
    senders = delivered["From"].addresses
    assert len(senders) == 1 and senders[0] == Address(
        "Example Alerts", addr_spec="alerts@notify.example.com"
    )
    assert [str(a) for a in delivered["To"].addresses] == ["reader@example.org"]
    assert delivered["Subject"] == message.subject
    assert delivered["Reply-To"] == "support@notify.example.com"
    assert delivered["X-Notification-Id"] == message.notification_id
    assert delivered["List-Unsubscribe"] == "<https://notify.example.com/u/abc123>"
    assert delivered["X-Test-Smtputf8"] == "no"
    text, html = delivered.get_body(("plain",)), delivered.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content() == "Plain body with ünïcode\n"
    assert html.get_content() == "<p>HTML <b>body</b> with ünïcode</p>\n"
    assert text["Content-Transfer-Encoding"] == "8bit"


def test_auth_login_when_the_server_offers_only_login(exim: Exim) -> None:
    message_id = _send(exim, exim.login_port, make_email("1c8e4d3f-2e5b-4f60-9b7c-8d9e0f1a2b32"))
    assert " A=login:notify " in exim.reception(message_id)
    assert exim.delivered(message_id)["X-Notification-Id"] == "1c8e4d3f-2e5b-4f60-9b7c-8d9e0f1a2b32"


def test_a_wrong_password_is_a_misconfiguration(exim: Exim) -> None:
    provider = exim.provider(exim.plain_port, password="wrong")
    with pytest.raises(ProviderMisconfigured) as caught:
        provider.send_email(make_email("2d9f5e40-3f6c-4071-8c8d-9e0f1a2b3c43"))
    provider.close()
    assert caught.value.code == "535"
    assert "wrong" not in str(caught.value)


def test_idn_domain_travels_as_punycode(exim: Exim) -> None:
    message = make_email("3e0a6f51-4a7d-4182-9d9e-0f1a2b3c4d54", to_address="ana@münchen.example")
    message_id = _send(exim, exim.plain_port, message)
    delivered = exim.delivered(message_id)
    assert delivered["Envelope-to"] == "ana@xn--mnchen-3ya.example"
    assert delivered["X-Test-Smtputf8"] == "no"  # an ASCII envelope needs no SMTPUTF8


def test_non_ascii_local_part_uses_smtputf8(exim: Exim) -> None:
    message = make_email("4f1b7062-5b8e-4293-8eaf-1a2b3c4d5e65", to_address="josé@example.org")
    message_id = _send(exim, exim.plain_port, message)
    delivered = exim.delivered(message_id)
    assert delivered["X-Test-Smtputf8"] == "yes"  # MAIL FROM said SMTPUTF8
    assert delivered["Envelope-to"] == "josé@example.org"
    assert "\nTo: josé@example.org\n".encode() in exim.raw(message_id)  # the header as sent, in UTF-8
    body = delivered.get_body(("plain",))
    assert body is not None and body.get_content() == "Plain body with ünïcode\n"
