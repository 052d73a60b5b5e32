"""Sample VtEvents for the test suite: the builders in ``workers.samples``, and their parsed form."""

from __future__ import annotations

from typing import Any

from workers.events import ParsedEvent, parse_event_dict
from workers.samples import TYPE, basic_email, core, mention, mention_item, sms

__all__ = ["TYPE", "basic_email", "core", "mention", "mention_item", "parsed", "sms"]


def parsed(event: dict[str, Any]) -> ParsedEvent:
    return parse_event_dict(event)
