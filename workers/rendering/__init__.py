"""Render notification templates: Handlebars (Mandrill's dialect) and Mailchimp merge tags.

Public API (others script against it: a fixed interface, listed in docs/architecture.md):

* ``render(source, data, language="handlebars", *, partials=None, escape=True)``: render a template
  string. ``language`` is ``"handlebars"`` or ``"mailchimp"``; ``escape=False`` prints values
  unescaped (for subject and text parts). Compiled templates are cached by source and language.
* ``TemplateStore(root)``: the templates on disk (``names``, ``render``, ``check``).
* ``default_templates_dir()``: where the shipped templates are.
* ``mention_template_data(place_holders, from_name=..., service_name=...)``: the data a mention
  template sees (derived fields documented in ``mention_data`` and ``templates/README.md``).

Errors: ``workers.errors.TemplateSyntaxError`` (template name, line, column, what was expected)
when a template does not parse; ``TemplateError`` for render-time failures (missing helper or
partial, recursion bounds). Rendering either returns the whole text or raises; nothing partial.
"""

from __future__ import annotations

from pathlib import Path

import workers
from workers.rendering.engines import render
from workers.rendering.mention_data import mention_template_data
from workers.rendering.store import TemplateStore


def default_templates_dir() -> Path:
    """Templates inside the installed package (wheel), else the repository's top-level ``templates/``."""
    package = Path(workers.__file__).parent
    shipped = package / "templates"
    if shipped.is_dir():
        return shipped
    return package.parent / "templates"


__all__ = ["TemplateStore", "default_templates_dir", "mention_template_data", "render"]
