"""Load templates from a directory, one folder per template name, and render their parts.

Layout: ``ROOT/<name>/<part>.<ext>`` with part ``subject``, ``html`` or ``text`` and ext ``hbs``
(Handlebars) or ``mc`` (Mailchimp merge tags). Handlebars partials live in ``ROOT/partials/*.hbs``
and are shared by every template; folders whose names start with ``_`` or ``.``, and ``partials``,
are not templates. Escaping rule: the ``html`` part HTML-escapes values; ``subject`` and ``text``
print values as they are (they are not HTML; escaping would show ``&amp;`` to readers).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from workers.errors import TemplateError, TemplateSyntaxError
from workers.rendering.engines import Compiled, check_language
from workers.rendering.handlebars import HandlebarsTemplate
from workers.rendering.hbs_helpers import HELPERS
from workers.rendering.mailchimp import MailchimpTemplate

Part = Literal["subject", "html", "text"]
PARTS: tuple[Part, ...] = ("subject", "html", "text")
EXTENSIONS = {"handlebars": "hbs", "mailchimp": "mc"}
PARTIALS_DIR = "partials"


class TemplateStore:
    """Templates under ``root``; each (name, part, language) is compiled once and cached."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._compiled: dict[tuple[str, str, str], Compiled] = {}
        self._partials: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._names: tuple[int, frozenset[str]] | None = None

    def names(self) -> frozenset[str]:
        # Asked for every incoming event: list the folder again only when its mtime says a template
        # folder was added or removed, one stat() instead of a directory scan per message.
        try:
            stamp = self.root.stat().st_mtime_ns
        except OSError:
            return frozenset()
        cached = self._names
        if cached is not None and cached[0] == stamp:
            return cached[1]
        names = frozenset(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and entry.name != PARTIALS_DIR and not entry.name.startswith(("_", "."))
        )
        self._names = (stamp, names)
        return names

    def path(self, name: str, part: str, language: str) -> Path:
        if name not in self.names():
            raise TemplateError(f"no template named {name!r} in {self.root}", template=name)
        if part not in PARTS:
            raise TemplateError(
                f"unknown template part {part!r}; expected subject, html or text", template=name
            )
        return self.root / name / f"{part}.{EXTENSIONS[check_language(language)]}"

    def template(self, name: str, part: str, language: str) -> Compiled:
        key = (name, part, language)
        found = self._compiled.get(key)
        if found is not None:
            return found
        path = self.path(name, part, language)
        label = f"{name}/{path.name}"
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TemplateError(
                f"template {name!r} has no {part} part in {language}", template=label
            ) from None
        escape = part == "html"
        compiled: Compiled
        if language == "handlebars":
            compiled = HandlebarsTemplate(source, name=label, escape=escape)
        else:
            compiled = MailchimpTemplate(source, name=label, escape=escape)
        with self._lock:
            self._compiled.setdefault(key, compiled)
        return self._compiled[key]

    def _partial_sources(self) -> dict[str, Path]:
        folder = self.root / PARTIALS_DIR
        if not folder.is_dir():
            return {}
        return {path.stem: path for path in sorted(folder.glob("*.hbs"))}

    def _partial(self, name: str, escape: bool) -> Any:
        key = ("partials", name, "html" if escape else "plain")
        found = self._compiled.get(key)
        if found is None:
            path = self._partial_sources().get(name)
            if path is None:
                return None
            found = HandlebarsTemplate(
                path.read_text(encoding="utf-8"), name=f"{PARTIALS_DIR}/{path.name}", escape=escape
            )
            with self._lock:
                self._compiled.setdefault(key, found)
        assert isinstance(found, HandlebarsTemplate)
        return found.as_partial()

    def render(self, name: str, part: Part, language: str, data: Mapping[str, Any]) -> str:
        """Render one part; raises TemplateError (missing template/part, syntax, render failure)."""
        template = self.template(name, part, language)
        if isinstance(template, MailchimpTemplate):
            return template.render(data)
        escape = part == "html"
        return template.render(data, lambda partial: self._partial(partial, escape))

    def check(self) -> dict[str, dict[str, list[str]]]:
        """Parse every template file; {template: {part.ext: variables used}}.

        Raises the first TemplateSyntaxError (it names the file, line and column).
        """
        report: dict[str, dict[str, list[str]]] = {}
        for name in sorted(self.names()):
            parts: dict[str, list[str]] = {}
            for path in sorted((self.root / name).iterdir()):
                language = next((lang for lang, ext in EXTENSIONS.items() if path.suffix == f".{ext}"), None)
                if language is None or path.stem not in PARTS:
                    continue
                compiled = self.template(name, path.stem, language)
                parts[path.name] = _variables(compiled)
            report[name] = parts
        for path in self._partial_sources().values():
            compiled_partial = HandlebarsTemplate(
                path.read_text(encoding="utf-8"), name=f"{PARTIALS_DIR}/{path.name}"
            )
            report.setdefault(PARTIALS_DIR, {})[path.name] = _variables(compiled_partial)
        return report

    def errors(self) -> list[TemplateSyntaxError]:
        """Like ``check`` but collects every syntax error instead of stopping at the first."""
        found: list[TemplateSyntaxError] = []
        for name in sorted(self.names()):
            for path in sorted((self.root / name).iterdir()):
                language = next((lang for lang, ext in EXTENSIONS.items() if path.suffix == f".{ext}"), None)
                if language is None or path.stem not in PARTS:
                    continue
                try:
                    self.template(name, path.stem, language)
                except TemplateSyntaxError as error:
                    found.append(error)
        return found


def _variables(compiled: Compiled) -> list[str]:
    if isinstance(compiled, MailchimpTemplate):
        return [name.lower() for name in compiled.variables()]
    names = []
    for original in compiled.variables():
        if original in HELPERS or original.startswith("@") or original in ("this", ".", ".."):
            continue
        names.append(original)
    return names
