"""The ledger: one row per notification, the state machine over it, and operator queries."""

from workers.ledger.engine import make_engine
from workers.ledger.store import AcceptResult, Claim, Held, Ledger, Reason

__all__ = ["AcceptResult", "Claim", "Held", "Ledger", "Reason", "make_engine"]
