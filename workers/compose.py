"""Turns a claimed ledger row into the EmailMessage or SmsMessage a provider sends."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from workers.errors import InvalidEvent
from workers.event_types import BASIC_EMAIL, MENTION_EMAIL_GENERATED
from workers.messages import EmailMessage, SmsMessage, StoredTemplate


class TemplateRenderer(Protocol):
    """What composing needs from the template store (``workers.rendering.TemplateStore``)."""

    def render(
        self, name: str, part: Literal["subject", "html", "text"], language: str, data: Mapping[str, Any]
    ) -> str: ...


class MentionData(Protocol):
    def __call__(
        self, place_holders: Mapping[str, Any], *, from_name: str, service_name: str
    ) -> dict[str, Any]: ...


_BLOCK = re.compile(r"</?(p|div|br|tr|li|h[1-6]|table|ul|ol)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BLANKS = re.compile(r"\n\s*\n\s*\n+")


def html_to_text(markup: str) -> str:
    """A readable plain-text part for an HTML-only email (clients and spam filters want one)."""
    text = _SCRIPT.sub("", markup)
    text = _BLOCK.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
    lines = [line.strip() for line in text.splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip() + "\n"


class Composer:
    """Builds provider-neutral messages from stored payloads; rendering happens here, once."""

    def __init__(
        self,
        templates: TemplateRenderer,
        mention_data: MentionData,
        *,
        provider_side_templates: bool = False,
    ) -> None:
        self.templates = templates
        self.mention_data = mention_data
        self.provider_side_templates = provider_side_templates

    def email(self, notification_id: str, event_type: str, payload: Mapping[str, Any]) -> EmailMessage:
        if event_type == BASIC_EMAIL:
            return self._basic(notification_id, payload)
        if event_type == MENTION_EMAIL_GENERATED:
            return self._mention(notification_id, payload)
        raise InvalidEvent(f"{event_type} is not an email event", field="data")

    def sms(self, notification_id: str, payload: Mapping[str, Any]) -> SmsMessage:
        return SmsMessage(
            notification_id=notification_id,
            from_number=str(payload["from_number"]),
            to_number=str(payload["to_number"]),
            body=str(payload["message"]),
        )

    def _basic(self, notification_id: str, payload: Mapping[str, Any]) -> EmailMessage:
        body_html = payload.get("body_html") or None
        body = payload.get("body") or None
        return EmailMessage(
            notification_id=notification_id,
            from_address=payload["from_address"],
            to_address=payload["to_address"],
            subject=payload["subject"],
            html=body_html,
            # body_html wins in the client, but a text part always rides along.
            text=body if body else (html_to_text(body_html) if body_html else ""),
            reply_to=payload.get("reply_to") or None,
        )

    def _mention(self, notification_id: str, payload: Mapping[str, Any]) -> EmailMessage:
        name = payload["template"]
        language = payload.get("merge_language") or "handlebars"
        data = self.mention_data(
            payload.get("place_holders") or {},
            from_name=payload.get("from_name", ""),
            service_name=payload.get("service_name", ""),
        )
        subject = self.templates.render(name, "subject", language, data).strip()
        headers: dict[str, str] = {}
        unsubscribe = next(
            (
                m.get("unsubscribe_link")
                for m in (payload.get("place_holders") or {}).get("mentions", [])
                if m.get("unsubscribe_link")
            ),
            None,
        )
        if unsubscribe:
            headers["List-Unsubscribe"] = f"<{unsubscribe}>"
        return EmailMessage(
            notification_id=notification_id,
            from_address=payload["from_email"],
            from_name=payload.get("from_name") or None,
            to_address=payload["to_email"],
            subject=" ".join(subject.split()),
            html=self.templates.render(name, "html", language, data),
            text=self.templates.render(name, "text", language, data),
            headers=headers,
            tags=(name,),
            template=(
                StoredTemplate(name=name, merge_language=language, global_merge_vars=data)
                if self.provider_side_templates
                else None
            ),
        )
