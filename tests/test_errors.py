"""Our errors survive pickling as themselves: Celery pickles a task's exception before it logs it."""

from __future__ import annotations

import pickle

import pytest
from celery.app.trace import get_log_policy, log_policy_expected
from celery.utils.serialization import get_pickleable_exception

from workers import errors
from workers.tasks import deliver

SAMPLES: list[errors.NotifyError] = [
    errors.NotifyError("plain"),
    errors.ConfigurationError("NOTIFY_X: bad"),
    errors.LedgerUnavailable("database away"),
    errors.InvalidEvent(
        "is required", field="data.to_address", notification_id="n-1", event_type="BasicEmail"
    ),
    errors.NotOurEvent("events.Other"),
    errors.InvalidWebhook("mandrill_events", "is not JSON"),
    errors.DeliveryError("refused", provider="mandrill", code="invalid"),
    errors.GiveUp("refused", provider="twilio", code="21610", suppress="stop"),
    errors.RetryLater("busy", provider="mandrill", code="503", retry_after=2.5),
    errors.RateLimited("slow down", provider="twilio", code="20429", retry_after=1.0),
    errors.MaybeDelivered("timed out", provider="mandrill", code="timeout", retry_after=None),
    errors.ProviderMisconfigured("bad key", provider="mandrill", code="Invalid_Key"),
    errors.RecipientSuppressed("hard_bounce"),
    errors.TemplateError("unknown helper", template="mention/html.hbs", line=3, column=7),
    errors.TemplateSyntaxError("unclosed block", template="mention/html.hbs", line=9, column=1),
    errors.DeliveryFailed("n-1", "failed", "suppressed: hard_bounce"),
]


def test_every_error_class_has_a_sample() -> None:
    classes = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.NotifyError)
    }
    assert classes == {type(sample) for sample in SAMPLES}


@pytest.mark.parametrize("error", SAMPLES, ids=lambda error: type(error).__name__)
def test_pickling_keeps_the_class_the_message_and_the_attributes(error: errors.NotifyError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)


def test_celery_logs_a_failed_delivery_as_expected_not_as_a_crash() -> None:
    # Before: pickling DeliveryFailed failed, Celery fell back to NotifyError, which is not in the
    # task's ``throws``, and logged "raised unexpected" with a traceback for every failed send.
    error = errors.DeliveryFailed("n-1", "failed", "suppressed: manual")
    kept = get_pickleable_exception(error)
    assert type(kept) is errors.DeliveryFailed

    class Info:
        internal = False

    assert get_log_policy(deliver, Info(), kept) is log_policy_expected
