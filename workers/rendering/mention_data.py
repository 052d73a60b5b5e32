"""Build the data a mention template sees from a MentionEmailGenerated event's ``place_holders``.

The same dictionary serves both merge languages: Mailchimp tag names are case-insensitive, so
``*|TRACKING_UNIT_NAME|*`` reads ``tracking_unit_name``. Fields (see templates/README.md):

From the event, unchanged: ``tracking_unit_name``, ``via``, ``logouri``, ``from_name``,
``service_name``, and ``mentions``: a list of the event's mentions with every proto field
(``tracking_unit_name``, ``program_name``, ``program_image``, ``mention_date``, ``snippets``,
``invite_link``, ``via``, ``logouri``, ``creator_email``, ``unsubscribe_hash``,
``unsubscribe_link``); missing strings become ``""``.

Derived, per mention: ``mention_date`` as an int (proto3 JSON sends int64 as a string),
``mention_date_formatted`` (``"25 Nov 2025, 09:20 UTC"``), ``mention_date_iso``
(``"2025-11-25T09:20:00Z"``), ``position`` (1-based).

Derived, top level: ``mention_count``; ``mentions_label`` (``"1 new mention"``,
``"3 new mentions"``); ``has_mentions``; ``mention``: the first mention (or null) and the same fields
flattened as ``mention_<field>`` (``mention_program_name``, ``mention_date_formatted``, ...) for
merge tags, which cannot follow paths; ``unsubscribe_link``: the first non-empty mention
unsubscribe link (or ""); ``logouri`` falls back to the first mention's logo when the top level
has none.

Mailchimp merge tags cannot loop, so the list of mentions is also given pre-rendered:
``mentions_html`` (HTML-escaped markup, print it with ``*|HTML:MENTIONS_HTML|*``) and
``mentions_text`` (plain text). They match the ``{{#each mentions}}`` blocks of the
``mention-notification-bulk`` Handlebars templates character for character; a test keeps them so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.rendering.hbs_helpers import to_utc
from workers.rendering.values import escape_html

MENTION_FIELDS = (
    "tracking_unit_name",
    "program_name",
    "program_image",
    "mention_date",
    "snippets",
    "invite_link",
    "via",
    "logouri",
    "creator_email",
    "unsubscribe_hash",
    "unsubscribe_link",
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# One mention in the bulk email; keep in step with templates/mention-notification-bulk/html.hbs.
_HTML_ITEM = (
    '<tr><td style="padding:16px 0;border-top:1px solid #e5e7eb;">\n'
    '<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr>\n'
    "{image}"
    '<td valign="top" style="font-size:14px;line-height:20px;color:#374151;">\n'
    '<div style="font-size:16px;font-weight:bold;color:#111827;">{program_name}</div>\n'
    '<div style="font-size:12px;color:#6b7280;">{mention_date_formatted} &middot; via {via}</div>\n'
    '<p style="margin:8px 0;">&ldquo;{snippets}&rdquo;</p>\n'
    '<a href="{invite_link}" style="color:#2563eb;font-weight:bold;">View this mention</a>\n'
    "</td>\n"
    "</tr></table>\n"
    "</td></tr>\n"
)
_HTML_IMAGE = (
    '<td width="72" valign="top" style="padding-right:12px;">'
    '<img src="{program_image}" alt="{program_name}" width="64" height="64" '
    'style="display:block;width:64px;height:64px;border:0;border-radius:4px;background-color:#e5e7eb;'
    'font-family:Helvetica,Arial,sans-serif;font-size:11px;line-height:14px;color:#374151;overflow:hidden;">'
    "</td>\n"
)
# One mention in the bulk text part; keep in step with templates/mention-notification-bulk/text.hbs.
_TEXT_ITEM = (
    '{position}. {program_name} ({mention_date_formatted}, via {via})\n   "{snippets}"\n   {invite_link}\n\n'
)


def format_date(seconds: Any) -> tuple[int | None, str, str]:
    """(unix seconds, "25 Nov 2025, 09:20 UTC", ISO 8601 with Z); empty strings when unusable."""
    moment = to_utc(seconds)
    if moment is None:
        return None, "", ""
    readable = (
        f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}, {moment.hour:02d}:{moment.minute:02d} UTC"
    )
    return int(moment.timestamp()), readable, moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _mention(raw: Mapping[str, Any], position: int) -> dict[str, Any]:
    mention: dict[str, Any] = {field: _text(raw.get(field)) for field in MENTION_FIELDS}
    seconds, readable, iso = format_date(raw.get("mention_date"))
    mention["mention_date"] = seconds
    mention["mention_date_formatted"] = readable
    mention["mention_date_iso"] = iso
    mention["position"] = position
    return mention


# The fields _HTML_ITEM and _HTML_IMAGE print: only these are escaped (all strings by then).
_HTML_FIELDS = ("program_name", "program_image", "mention_date_formatted", "via", "snippets", "invite_link")


def _html_block(mentions: list[dict[str, Any]]) -> str:
    parts = []
    for mention in mentions:
        escaped = {key: escape_html(mention[key]) for key in _HTML_FIELDS}
        image = _HTML_IMAGE.format(**escaped) if mention["program_image"] else ""
        parts.append(_HTML_ITEM.format(image=image, **escaped))
    return "".join(parts)


def _text_block(mentions: list[dict[str, Any]]) -> str:
    return "".join(_TEXT_ITEM.format(**mention) for mention in mentions)


def mention_template_data(
    place_holders: Mapping[str, Any], *, from_name: str, service_name: str
) -> dict[str, Any]:
    """Template data for ``mention-notification`` and ``mention-notification-bulk``, both languages."""
    raw_mentions = place_holders.get("mentions") or []
    mentions = [
        _mention(raw, index) for index, raw in enumerate(raw_mentions, start=1) if isinstance(raw, Mapping)
    ]
    first: dict[str, Any] = mentions[0] if mentions else {}
    count = len(mentions)
    data: dict[str, Any] = {
        "tracking_unit_name": _text(place_holders.get("tracking_unit_name")),
        "via": _text(place_holders.get("via")),
        "logouri": _text(place_holders.get("logouri")) or _text(first.get("logouri")),
        "from_name": from_name,
        "service_name": service_name,
        "mentions": mentions,
        "mention_count": count,
        "mentions_label": f"{count} new mention" if count == 1 else f"{count} new mentions",
        "mention": first or None,
        "has_mentions": bool(mentions),
        "unsubscribe_link": next((m["unsubscribe_link"] for m in mentions if m["unsubscribe_link"]), ""),
        "mentions_html": _html_block(mentions),
        "mentions_text": _text_block(mentions),
    }
    for key in (*MENTION_FIELDS, "mention_date_formatted", "mention_date_iso"):
        flat = key if key.startswith("mention_") else f"mention_{key}"
        data[flat] = first.get(key, "")
    return data
