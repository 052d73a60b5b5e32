"""Strips email addresses and phone numbers out of provider text before it enters our errors or logs."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")
# Seven or more digits, optionally led by + and broken by spaces, dots, dashes or brackets: a phone number.
_PHONE = re.compile(r"\+?\d(?:[\s().-]*\d){6,}")
_MAX = 300


def redact(text: str) -> str:
    """``text`` with addresses and numbers replaced and its length bounded, safe to store and log."""
    cleaned = _PHONE.sub("<number>", _EMAIL.sub("<address>", text))
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= _MAX else cleaned[: _MAX - 3] + "..."
