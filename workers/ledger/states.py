"""The status state machine: which transitions exist, in one table that every write consults."""

from __future__ import annotations

from workers.messages import Status

S = Status

# Forward-only transitions. The ledger's compare-and-set writes only ever move a row along one of
# these edges, so a late or duplicate update can never drag a row backwards.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.ACCEPTED: frozenset({S.QUEUED, S.SENDING, S.DISCARDED}),
    S.QUEUED: frozenset({S.SENDING, S.DISCARDED}),
    S.SENDING: frozenset({S.SENT, S.RETRYING, S.FAILED, S.DEAD, S.UNKNOWN}),
    S.RETRYING: frozenset({S.SENDING, S.DEAD, S.DISCARDED}),
    # A worker that was presumed dead may still report; the answer it heard is the truth. A
    # delivery receipt for it proves the provider accepted it, so it moves like a `sent` row.
    S.UNKNOWN: frozenset({S.SENT, S.FAILED, S.DISCARDED, S.DELIVERED, S.BOUNCED, S.COMPLAINED}),
    S.FAILED: frozenset({S.DISCARDED}),
    S.DEAD: frozenset({S.DISCARDED}),
    S.REJECTED: frozenset({S.DISCARDED}),
    # Delivery receipts (README "Delivery receipts" has each rule's source). A row that stays
    # `sent` without any receipt is normal: some routes never report.
    S.SENT: frozenset({S.DELIVERED, S.BOUNCED, S.COMPLAINED}),
    # Providers report both for one message: Mandrill sends `delivered`, then a late
    # `hard_bounce` or `spam`; Twilio may follow `delivered` with `undelivered` from the carrier.
    S.DELIVERED: frozenset({S.BOUNCED, S.COMPLAINED}),
    # A complaint is the recipient's own word that the message reached them: it outranks a bounce.
    S.BOUNCED: frozenset({S.COMPLAINED}),
    S.COMPLAINED: frozenset(),
    S.DISCARDED: frozenset(),
}

# An operator's resend starts a new cycle; it is the only way back to `queued`, and from `sent` it
# needs --force because it means sending the same message again.
RESENDABLE: frozenset[Status] = frozenset({S.FAILED, S.DEAD, S.UNKNOWN, S.DISCARDED})
RESENDABLE_FORCED: frozenset[Status] = RESENDABLE | {S.SENT, S.DELIVERED, S.BOUNCED, S.COMPLAINED}

CLAIMABLE: frozenset[Status] = frozenset({S.ACCEPTED, S.QUEUED, S.RETRYING})
FAILED_STATES: frozenset[Status] = frozenset({S.FAILED, S.DEAD, S.UNKNOWN, S.REJECTED})

# The statuses a delivery receipt can ask for; a receipt without one of these leaves the row as it is.
RECEIPT_STATUSES: frozenset[Status] = frozenset({S.DELIVERED, S.BOUNCED, S.COMPLAINED})
# The final statuses announced on the bus (NOTIFY_STATUS_EVENTS): `sent` counts when it is reached,
# though receipts may still follow; `unknown` and `discarded` are an operator's business, not news.
ANNOUNCED: frozenset[Status] = frozenset(
    {S.SENT, S.DELIVERED, S.BOUNCED, S.COMPLAINED, S.FAILED, S.DEAD, S.REJECTED}
)


def sources(target: Status) -> frozenset[Status]:
    """Every status from which ``target`` may be reached by a normal (non-resend) transition."""
    return frozenset(origin for origin, targets in TRANSITIONS.items() if target in targets)


def allowed(origin: Status, target: Status) -> bool:
    return target in TRANSITIONS[origin]
