"""Mailchimp merge tags (Mandrill's ``mailchimp`` merge language): parse once, render with closures.

Syntax (tag names are case-insensitive; ``NAME`` is letters, digits and ``_``):

* ``*|NAME|*`` prints the value, HTML-escaped when the template part is HTML (the store escapes the
  ``html`` part and not ``subject``/``text``; ``render`` takes ``escape=``).
* ``*|HTML:NAME|*`` prints the value unescaped; ``*|UPPER:NAME|*``, ``*|LOWER:NAME|*``,
  ``*|TITLE:NAME|*`` change case; ``*|URL:NAME|*`` URL-encodes; ``*|DATE:FORMAT|*`` prints the
  current UTC date with PHP ``date()`` letters (``*|DATE:|*`` uses ``d/m/Y``).
* ``*|IF:NAME|*`` / ``*|IFNOT:NAME|*``, ``*|IF:NAME=value|*``, ``*|IF:NAME!=value|*`` (also ``>``
  ``<`` ``>=`` ``<=``), ``*|ELSEIF:...|*``, ``*|ELSE:|*``, ``*|END:IF|*``; conditionals nest.

Rules Mandrill leaves open, fixed here: a missing name prints nothing; a name is "true" unless it
is missing, null, false, the empty string or an empty list/map (``0`` is true: it was given);
``=``/``!=`` compare printed values as numbers when both read as numbers, else as exact strings
(the value after ``=`` may be quoted). Anything that looks like ``*|...|*`` but is not a valid tag
is kept as text, as Mailchimp does; an unbalanced ``IF``/``ELSE``/``END:IF`` is a syntax error.
Values are inserted once and never re-scanned, so tags inside values stay inert.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workers.errors import TemplateSyntaxError
from workers.rendering.comparisons import compare
from workers.rendering.hbs_helpers import php_date, title_case, url_encode
from workers.rendering.values import escape_html, is_array, js_string

_TAG = re.compile(r"\*\|([^|\r\n]{0,200}?)\|\*")
_NAME = r"[A-Za-z0-9_]+"
_CONDITION = re.compile(
    r"(?P<name>" + _NAME + r")\s*(?:(?P<op>!=|>=|<=|=|>|<)\s*(?P<value>\"[^\"]*\"|'[^']*'|.*?))?\s*\Z"
)
_VARIABLE = re.compile(r"(?:(?P<fn>HTML|UPPER|LOWER|TITLE|URL):)?(?P<name>" + _NAME + r")\Z", re.IGNORECASE)
MAX_NESTING = 100

Lookup = Callable[[Mapping[str, Any]], str]
Emit = Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True, slots=True)
class _Branch:
    test: Callable[[Mapping[str, Any]], bool] | None  # None: the ELSE branch
    body: list[Emit]


class MailchimpTemplate:
    """A parsed merge-tag template; immutable, shareable between threads."""

    __slots__ = ("_body", "name", "names")

    def __init__(self, source: str, *, name: str = "<string>", escape: bool = True) -> None:
        self.name = name
        self.names: list[str] = []
        self._body = _Parser(source, name, escape, self.names).parse()

    def render(self, data: Mapping[str, Any]) -> str:
        values = {str(key).upper(): value for key, value in data.items()} if isinstance(data, Mapping) else {}
        return "".join([emit(values) for emit in self._body])

    def variables(self) -> list[str]:
        return list(dict.fromkeys(self.names))


def _truthy(value: Any) -> bool:
    if value is None or value is False or value == "":
        return False
    if is_array(value) or isinstance(value, Mapping):
        return len(value) > 0
    return True


class _Parser:
    def __init__(self, source: str, name: str, escape: bool, names: list[str]) -> None:
        self.source = source
        self.name = name
        self.escape = escape
        self.names = names

    def error(self, message: str, pos: int) -> TemplateSyntaxError:
        line = self.source.count("\n", 0, pos) + 1
        column = pos - (self.source.rfind("\n", 0, pos) + 1) + 1
        return TemplateSyntaxError(message, template=self.name, line=line, column=column)

    def parse(self) -> list[Emit]:
        # Stack of open conditionals: (branches so far, current body, start offset).
        root: list[Emit] = []
        stack: list[tuple[list[_Branch], list[Emit], int, Callable[[Mapping[str, Any]], bool] | None]] = []
        body = root
        pos = 0
        text: list[str] = []

        def flush() -> None:
            if text:
                constant = "".join(text)
                body.append(lambda values: constant)
                text.clear()

        for match in _TAG.finditer(self.source):
            text.append(self.source[pos : match.start()])
            pos = match.end()
            tag = match.group(1).strip()
            upper = tag.upper()
            if upper.startswith(("IF:", "IFNOT:")):
                flush()
                negate = upper.startswith("IFNOT:")
                test = self.condition(tag.split(":", 1)[1], match.start(), negate)
                if len(stack) >= MAX_NESTING:
                    raise self.error(f"conditionals nest deeper than {MAX_NESTING} levels", match.start())
                stack.append(([], body, match.start(), test))
                body = []
                continue
            if upper.startswith("ELSEIF:") or upper == "ELSE:" or upper == "END:IF":
                flush()
                if not stack:
                    raise self.error(f"'*|{tag}|*' without an open '*|IF:...|*'", match.start())
                branches, parent, start, current = stack[-1]
                if current is None and upper != "END:IF":
                    raise self.error(
                        f"expected '*|END:IF|*' after '*|ELSE:|*', got '*|{tag}|*'", match.start()
                    )
                branches.append(_Branch(current, body))
                body = []
                if upper == "END:IF":
                    stack.pop()
                    parent.append(_conditional(branches))
                    body = parent
                elif upper == "ELSE:":
                    stack[-1] = (branches, parent, start, None)
                else:
                    stack[-1] = (
                        branches,
                        parent,
                        start,
                        self.condition(tag.split(":", 1)[1], match.start(), False),
                    )
                continue
            emit = self.variable(tag, match.start())
            if emit is None:
                text.append(match.group())  # not a merge tag we know: keep it, as Mailchimp does
                continue
            flush()
            body.append(emit)
        text.append(self.source[pos:])
        flush()
        if stack:
            raise self.error("expected '*|END:IF|*' to close this conditional", stack[-1][2])
        return root

    def condition(self, expression: str, pos: int, negate: bool) -> Callable[[Mapping[str, Any]], bool]:
        found = _CONDITION.match(expression.strip())
        if found is None:
            raise self.error(f"expected a merge tag name in condition '{expression}'", pos)
        key = found.group("name").upper()
        self.names.append(key)
        op = found.group("op")
        if op is None:
            if negate:
                return lambda values: not _truthy(values.get(key))
            return lambda values: _truthy(values.get(key))
        literal = found.group("value") or ""
        if literal[:1] in ("'", '"') and literal[-1:] == literal[:1] and len(literal) >= 2:
            literal = literal[1:-1]
        symbol = "==" if op == "=" else op

        def test(values: Mapping[str, Any]) -> bool:
            outcome = compare(symbol, js_string(values.get(key)), literal)
            return not outcome if negate else outcome

        return test

    def variable(self, tag: str, pos: int) -> Emit | None:
        upper = tag.upper()
        if upper.startswith("DATE:") or upper == "DATE":
            fmt = tag[5:] or "d/m/Y"
            escape = self.escape
            return lambda values: _maybe_escape(
                php_date(fmt, datetime.fromtimestamp(time.time(), tz=UTC)), escape
            )
        found = _VARIABLE.match(tag)
        if found is None:
            return None
        key = found.group("name").upper()
        self.names.append(key)
        function = (found.group("fn") or "").upper()
        if function == "HTML":
            return lambda values: js_string(values.get(key))
        transform: Callable[[str], str] | None = {
            "UPPER": str.upper,
            "LOWER": str.lower,
            "TITLE": title_case,
            "URL": url_encode,
        }.get(function)
        if self.escape:
            if transform is None:
                return lambda values: _escaped(values.get(key))
            change = transform
            return lambda values: escape_html(change(js_string(values.get(key))))
        if transform is None:
            return lambda values: js_string(values.get(key))
        change = transform
        return lambda values: change(js_string(values.get(key)))


def _escaped(value: Any) -> str:
    if type(value) is str:
        return escape_html(value)
    return escape_html(js_string(value))


def _maybe_escape(text: str, escape: bool) -> str:
    return escape_html(text) if escape else text


def _conditional(branches: list[_Branch]) -> Emit:
    compiled = [(branch.test, tuple(branch.body)) for branch in branches]

    def run(values: Mapping[str, Any]) -> str:
        for test, body in compiled:
            if test is None or test(values):
                return "".join([emit(values) for emit in body])
        return ""

    return run
