"""Notification dispatch worker: VtEvents in, email and SMS out, exactly once in effect."""

__version__ = "0.1.0"
