"""The one error hierarchy, named for what the caller should do about each failure."""

from __future__ import annotations

from typing import Any


def _restore(cls: type[NotifyError], args: tuple[Any, ...]) -> NotifyError:
    """An error of exactly ``cls`` with ``args``, its attributes set from the pickled state after."""
    error = cls.__new__(cls)
    error.args = args
    return error


class NotifyError(Exception):
    """Root of every error this package raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls ``cls(*args)``, which fails for our constructors (their
        # arguments are not ``args``). Celery pickles a task's exception before logging it, and on
        # that failure falls back to the nearest base class that pickles: a DeliveryFailed was
        # logged as "raised unexpected: NotifyError(...)" with a traceback, and Flower showed a
        # NotifyError. This keeps the class and its attributes without running ``__init__``.
        return (_restore, (type(self), self.args), self.__dict__)


class InvalidEvent(NotifyError):
    """Fix the event: it cannot be decoded or fails validation; record it as rejected, never retry.

    ``field`` names the offending field as a dotted path (``data.to_address``) or is empty when the
    whole message is at fault (undecodable bytes, wrong content type).
    """

    def __init__(
        self,
        reason: str,
        *,
        field: str = "",
        notification_id: str | None = None,
        event_type: str | None = None,
    ) -> None:
        self.field = field
        self.reason = reason
        # Filled in by the decoder when the envelope was readable, so the rejection can be recorded.
        self.notification_id = notification_id
        self.event_type = event_type
        super().__init__(f"{field}: {reason}" if field else reason)


class InvalidWebhook(NotifyError):
    """Answer the webhook 400: its body is not in that provider's format (``where`` names the part).

    Never raised for a bad signature (that is a 403, decided before the body is read as events).
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


class NotOurEvent(NotifyError):
    """Ignore the message: a well-formed event of a type this worker does not handle."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        super().__init__(f"event type {type_name!r} is not handled by this worker")


class TemplateError(NotifyError):
    """Fix the template: it is missing, does not parse, or cannot render the data given."""

    def __init__(
        self,
        message: str,
        *,
        template: str = "<string>",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.template = template
        self.line = line
        self.column = column
        self.detail = message
        where = template
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")


class TemplateSyntaxError(TemplateError):
    """Fix the template: it does not parse; carries the template name, line and column."""


class ConfigurationError(NotifyError):
    """Fix the settings: a value in the environment is missing or malformed."""


class DeliveryError(NotifyError):
    """A provider did not accept a message; subclasses say whether to retry, give up or stop."""

    def __init__(self, message: str, *, provider: str = "", code: str | None = None) -> None:
        self.provider = provider
        self.code = code
        super().__init__(message)


class RetryLater(DeliveryError):
    """Retry later: a transient failure (timeout, dropped connection, 5xx, 429, quota).

    ``retry_after`` is the provider's own hint in seconds (Retry-After), when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, provider=provider, code=code)


class MaybeDelivered(RetryLater):
    """Retry later, knowing the provider may already have it: the request went out, no answer came.

    A read timeout after the whole request was sent. Retrying risks a duplicate; not retrying risks
    a loss. ``NOTIFY_ON_MAYBE_DELIVERED`` chooses: ``retry`` (default) or ``unknown`` (ask an operator).
    """


class RateLimited(RetryLater):
    """Retry later: our own shared rate limit says this send must wait ``retry_after`` seconds."""


class GiveUp(DeliveryError):
    """Give up: the provider refused this message for good (invalid recipient, bounce, opt-out).

    ``suppress`` is set when the refusal says the recipient cannot or will not receive (Mandrill
    ``rejected`` for hard-bounce, spam or unsub; Twilio 21610, a STOP): put them on the suppression
    list too. It is the list entry's reason, a ``workers.receipts.SuppressionReason`` value (this
    module sits below that one, so it travels as text); never the recipient.
    """

    def __init__(
        self, message: str, *, provider: str = "", code: str | None = None, suppress: str | None = None
    ) -> None:
        self.suppress = suppress
        super().__init__(message, provider=provider, code=code)


class RecipientSuppressed(GiveUp):
    """Give up without calling the provider: the recipient is on the suppression list.

    ``reason`` is the list entry's cause (``hard_bounce``, ``stop``, ...), never the recipient.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"suppressed: {reason}", code="suppressed")


class ProviderMisconfigured(DeliveryError):
    """Fix the configuration: bad API key or credentials; retrying would only burn the budget."""


class LedgerUnavailable(NotifyError):
    """Retry the ledger write later: its database refused or dropped the connection.

    Raised for a blip (connection refused, terminated, closed), never for a bug in a statement;
    the caller keeps what it was about to write and tries the write again.
    """


class DeliveryFailed(NotifyError):
    """Look at the ledger: the notification ended ``failed`` or ``dead``; never retried by the queue.

    Raised by the deliver task after the outcome is in the ledger, so that Flower and Celery's task
    events show a failed task; the message is the ledger's reason (ids and provider codes, no
    personal data).
    """

    def __init__(self, notification_id: str, status: str, reason: str) -> None:
        self.notification_id = notification_id
        self.status = status
        self.reason = reason
        super().__init__(f"notification {notification_id} {status}: {reason}")
