"""The ledger: one row per notification, the state machine over it, and operator queries.

What other packages use of the ledger is exported here; its tables stay inside it.
"""

from workers.ledger.engine import make_engine
from workers.ledger.queries import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    AttemptView,
    BadQuery,
    ListFilter,
    NotificationView,
    Page,
    ParkedProvider,
    count_by_status,
    get_notification,
    list_notifications,
    parked_providers,
)
from workers.ledger.receipts import ReceiptBook
from workers.ledger.states import FAILED_STATES, DiscardResult, ResendResult, explain_resend
from workers.ledger.store import (
    AcceptResult,
    Claim,
    FastPath,
    Held,
    Ledger,
    Reason,
    SentWrite,
    describe_error,
)
from workers.ledger.suppressions import OPERATOR, Suppressions
from workers.ledger.tokens import BadPageToken, PageTokens, load_key

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "FAILED_STATES",
    "MAX_PAGE_SIZE",
    "OPERATOR",
    "AcceptResult",
    "AttemptView",
    "BadPageToken",
    "BadQuery",
    "Claim",
    "DiscardResult",
    "FastPath",
    "Held",
    "Ledger",
    "ListFilter",
    "NotificationView",
    "Page",
    "PageTokens",
    "ParkedProvider",
    "Reason",
    "ReceiptBook",
    "ResendResult",
    "SentWrite",
    "Suppressions",
    "count_by_status",
    "describe_error",
    "explain_resend",
    "get_notification",
    "list_notifications",
    "load_key",
    "make_engine",
    "parked_providers",
]
