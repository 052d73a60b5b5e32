"""Choose the engine for a merge language and keep compiled templates in a bounded cache."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from workers.errors import TemplateError
from workers.rendering.handlebars import HandlebarsTemplate
from workers.rendering.mailchimp import MailchimpTemplate

LANGUAGES = ("handlebars", "mailchimp")
CACHE_SIZE = 512

Compiled = HandlebarsTemplate | MailchimpTemplate


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise TemplateError(f"unknown merge language {language!r}; expected one of {', '.join(LANGUAGES)}")
    return language


@lru_cache(maxsize=CACHE_SIZE)
def compile_source(source: str, language: str, escape: bool = True, name: str = "<string>") -> Compiled:
    """Parse and compile once per (source, language, escaping, name); raises TemplateSyntaxError."""
    if check_language(language) == "handlebars":
        return HandlebarsTemplate(source, name=name, escape=escape)
    return MailchimpTemplate(source, name=name, escape=escape)


def render(
    source: str,
    data: Mapping[str, Any],
    language: str = "handlebars",
    *,
    partials: Mapping[str, str] | None = None,
    escape: bool = True,
    name: str = "<string>",
) -> str:
    """Render ``source`` with ``data``; see ``workers.rendering.render``."""
    template = compile_source(source, language, escape, name)
    if isinstance(template, MailchimpTemplate):
        return template.render(data)
    sources = dict(partials or {})

    def load(partial_name: str) -> Any:
        text = sources.get(partial_name)
        if text is None:
            return None
        compiled = compile_source(text, "handlebars", escape, partial_name)
        assert isinstance(compiled, HandlebarsTemplate)
        return compiled.as_partial()

    return template.render(data, load)
