"""Local servers that speak our providers' wire protocols (Mandrill, Twilio, SMTP), for tests and demos."""

from workers.testing.mandrill_server import MandrillServer
from workers.testing.smtp_server import SmtpServer
from workers.testing.twilio_server import TwilioServer

__all__ = ["MandrillServer", "SmtpServer", "TwilioServer"]
