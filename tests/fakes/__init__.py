"""Local servers that speak our providers' wire protocols (Mandrill, Twilio, SMTP), for tests and demos."""

from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.smtp_server import SmtpServer
from tests.fakes.twilio_server import TwilioServer

__all__ = ["MandrillServer", "SmtpServer", "TwilioServer"]
