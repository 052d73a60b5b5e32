"""The status state machine: which transitions exist, in one table that every write consults.

Every status set a ledger write checks is named here, and derived from ``TRANSITIONS`` where the
table says it, so a status added to the table reaches every write that should see it.
"""

from __future__ import annotations

from enum import StrEnum

from workers.messages import TERMINAL, Status

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


def sources(target: Status) -> frozenset[Status]:
    """Every status from which ``target`` may be reached by a normal (non-resend) transition."""
    return frozenset(origin for origin, targets in TRANSITIONS.items() if target in targets)


def allowed(origin: Status, target: Status) -> bool:
    return target in TRANSITIONS[origin]


# A worker takes a row for an attempt from these (`-> sending`).
CLAIMABLE: frozenset[Status] = sources(S.SENDING)
# Statuses whose row still answers to the attempt that claimed it (its claim token decides whose):
# its own `sending`, and `unknown` when the sweeper gave up on a worker that was only slow.
HELD_BY_ATTEMPT: frozenset[Status] = frozenset({S.SENDING, S.UNKNOWN})
# What a delivery attempt may end in: every edge out of `sending`.
ATTEMPT_OUTCOMES: frozenset[Status] = TRANSITIONS[S.SENDING]


def outcome_sources(target: Status) -> frozenset[Status]:
    """Where an attempt's outcome ``target`` may be written: a held row that may move to it."""
    return sources(target) & HELD_BY_ATTEMPT


# Waiting for a deliver task that may have vanished; the sweeper enqueues them again.
AWAITING_TASK: frozenset[Status] = CLAIMABLE - {S.RETRYING}
# On its way: a resend would start a second cycle beside the running one.
IN_FLIGHT: frozenset[Status] = CLAIMABLE | {S.SENDING}
# Where a provider that refused our key or account parks its rows: `retrying`, and `sending` for the
# moment each turn claims one again (its error is kept), so `notify health` counts both.
PARKED: frozenset[Status] = frozenset({S.RETRYING, S.SENDING})
# Refused or given up for good: the deliver task fails in Flower, and `failed resend --all` takes them.
GAVE_UP: frozenset[Status] = frozenset({S.FAILED, S.DEAD})
# What `notify failed list` shows: every row that waits for an operator.
FAILED_STATES: frozenset[Status] = GAVE_UP | {S.UNKNOWN, S.REJECTED}

# An operator's resend starts a new cycle; it is the only way back to `queued`, and from `sent` it
# needs --force because it means sending the same message again. `unknown` only by id: it may
# have been delivered, so bulk resends (GAVE_UP) leave it out.
RESENDABLE: frozenset[Status] = GAVE_UP | {S.UNKNOWN, S.DISCARDED}
# The statuses a delivery receipt can ask for; a receipt without one of these leaves the row as it is.
RECEIPT_STATUSES: frozenset[Status] = frozenset({S.DELIVERED, S.BOUNCED, S.COMPLAINED})
# Taken by the provider: `sent` and whatever its receipts said since. A resend of one sends again.
ACCEPTED_BY_PROVIDER: frozenset[Status] = RECEIPT_STATUSES | {S.SENT}
RESENDABLE_FORCED: frozenset[Status] = RESENDABLE | ACCEPTED_BY_PROVIDER
RESEND_IN_BULK: frozenset[Status] = GAVE_UP

# The final statuses announced on the bus (NOTIFY_STATUS_EVENTS): `sent` counts when it is reached,
# though receipts may still follow; `unknown` and `discarded` are an operator's business, not news.
ANNOUNCED: frozenset[Status] = ACCEPTED_BY_PROVIDER | GAVE_UP | {S.REJECTED}

# Finished rows whose personal data retention purges; `unknown` keeps it until an operator decides.
PURGEABLE: frozenset[Status] = TERMINAL - {S.UNKNOWN}


class ResendResult(StrEnum):
    QUEUED = "queued"
    NOT_FOUND = "not-found"
    ALREADY_SENT = "already-sent"  # refused without --force
    IN_FLIGHT = "in-flight"  # queued, sending or retrying: it is already on its way
    NOT_RESENDABLE = "not-resendable"  # rejected events, or personal data already purged


class DiscardResult(StrEnum):
    DISCARDED = "discarded"
    NOT_FOUND = "not-found"
    REFUSED = "refused"


def explain_resend(status: Status | None, *, force: bool = False, purged: bool = False) -> ResendResult:
    """What a resend of a row in ``status`` does (None: no such row); ``purged``: its payload is gone.

    The one statement of the resend rules: the ledger's resend writes by it, and an operator's
    command asks it before queueing anything.
    """
    if status is None:
        return ResendResult.NOT_FOUND
    if purged:
        return ResendResult.NOT_RESENDABLE
    if status in (RESENDABLE_FORCED if force else RESENDABLE):
        return ResendResult.QUEUED
    if status in ACCEPTED_BY_PROVIDER:
        return ResendResult.ALREADY_SENT
    if status in IN_FLIGHT:
        return ResendResult.IN_FLIGHT
    return ResendResult.NOT_RESENDABLE
