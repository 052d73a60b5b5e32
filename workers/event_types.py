"""The full names of the three event types we deliver, spelled here once for every layer.

A name is at once the bus routing key, the tail of the payload's Any type URL and the ledger's
``event_type``. It lives in a foundation module that imports nothing, below ``workers.settings``
(whose default bus bindings list them); ``workers.events.schema`` ties each name to its protobuf
class and channel.
"""

from __future__ import annotations

from typing import Final

BASIC_EMAIL: Final = "events.BasicEmail"
SMS_NOTIFICATION: Final = "events.SMSNotification"
MENTION_EMAIL_GENERATED: Final = "events.MentionEmailGenerated"

# In the schema document's order: the default bindings of the worker's bus queue.
EVENT_TYPES: Final = (BASIC_EMAIL, SMS_NOTIFICATION, MENTION_EMAIL_GENERATED)

# The one event we publish (NOTIFY_STATUS_EVENTS=1), never consume: not among the bindings above.
NOTIFICATION_STATUS_CHANGED: Final = "events.NotificationStatusChanged"
