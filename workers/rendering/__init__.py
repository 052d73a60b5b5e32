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

from importlib.resources import files
from pathlib import Path

from workers.errors import ConfigurationError
from workers.rendering.engines import render
from workers.rendering.mention_data import mention_template_data
from workers.rendering.store import TemplateStore


def default_templates_dir() -> Path:
    """The shipped templates: ``workers/templates`` (the top-level ``templates/`` links there)."""
    # A plain or editable install keeps the package on disk, so the resource is a real folder: the
    # store stats and lists it. A zipped package (never built here) would not be, so say so plainly.
    shipped = files("workers") / "templates"
    if not isinstance(shipped, Path):
        raise ConfigurationError("the workers package is not on disk (zipped?); set NOTIFY_TEMPLATES_DIR")
    return shipped


__all__ = ["TemplateStore", "default_templates_dir", "mention_template_data", "render"]
