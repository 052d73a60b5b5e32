"""Split Handlebars source into tokens with offsets, following handlebars.js's lexer rule by rule.

The rule order and the lookaheads mirror ``handlebars.l`` from handlebars.js 4.7, because that
order decides edge cases template authors rely on (``\\{{`` escapes, ``{{else}}`` forms, raw
blocks, literals that end where an identifier would not). One addition: a backtick-quoted
Mandrill comparison inside a mustache becomes a single ``BACKTICK`` token.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from workers.errors import TemplateSyntaxError


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    pos: int


# Openers, tried in handlebars.l's order; the first alternative that matches wins, as in jison.
_OPENERS: list[tuple[str, re.Pattern[str]]] = [
    ("OPEN_RAW_BLOCK", re.compile(r"\{\{\{\{")),
    ("OPEN_PARTIAL", re.compile(r"\{\{~?>")),
    ("OPEN_PARTIAL_BLOCK", re.compile(r"\{\{~?#>")),
    ("OPEN_BLOCK", re.compile(r"\{\{~?#\*?")),
    ("OPEN_ENDBLOCK", re.compile(r"\{\{~?/")),
    ("INVERSE", re.compile(r"\{\{~?\^\s*~?\}\}")),
    ("INVERSE", re.compile(r"\{\{~?\s*else\s*~?\}\}")),
    ("OPEN_INVERSE", re.compile(r"\{\{~?\^")),
    # Mandrill's ``{{elseif cond}}``; handlebars.js would read it as a helper named ``elseif``.
    ("OPEN_ELSEIF", re.compile(r"\{\{~?\s*elseif\b")),
    ("OPEN_INVERSE_CHAIN", re.compile(r"\{\{~?\s*else\b")),
    ("OPEN_UNESCAPED", re.compile(r"\{\{~?\{")),
    ("OPEN", re.compile(r"\{\{~?&")),
    ("LONG_COMMENT", re.compile(r"\{\{~?!--")),
    ("COMMENT", re.compile(r"\{\{~?![\s\S]*?\}\}")),
    ("OPEN", re.compile(r"\{\{~?\*?")),
]
_LONG_COMMENT_END = re.compile(r"--~?\}\}")

_ID_CHARS = r"[^\s!\"#%-,\./;->@\[-\^`\{-~]+"
_INSIDE: list[tuple[str, re.Pattern[str]]] = [
    ("OPEN_SEXPR", re.compile(r"\(")),
    ("CLOSE_SEXPR", re.compile(r"\)")),
    ("OPEN_RAW_BLOCK", re.compile(r"\{\{\{\{")),
    ("CLOSE_RAW_BLOCK", re.compile(r"\}\}\}\}")),
    ("EQUALS", re.compile(r"=")),
    ("ID", re.compile(r"\.\.")),
    ("ID", re.compile(r"\.(?=[=~}\s/.)|])")),
    ("SEP", re.compile(r"[/.]")),
    ("SPACE", re.compile(r"\s+")),
    ("CLOSE_UNESCAPED", re.compile(r"\}~?\}\}")),
    ("CLOSE", re.compile(r"~?\}\}")),
    ("STRING", re.compile(r'"(?:\\"|[^"])*"')),
    ("STRING", re.compile(r"'(?:\\'|[^'])*'")),
    ("DATA", re.compile(r"@")),
    ("BOOLEAN", re.compile(r"(?:true|false)(?=[~}\s)])")),
    ("UNDEFINED", re.compile(r"undefined(?=[~}\s)])")),
    ("NULL", re.compile(r"null(?=[~}\s)])")),
    ("NUMBER", re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?=[~}\s)])")),
    ("OPEN_BLOCK_PARAMS", re.compile(r"as\s+\|")),
    ("CLOSE_BLOCK_PARAMS", re.compile(r"\|")),
    ("ID", re.compile(_ID_CHARS + r"(?=[=~}\s/.)|])")),
    ("ID", re.compile(r"\[(?:\\\]|[^\]])*\]")),
    ("BACKTICK", re.compile(r"`[^`]*`")),
]
_CLOSES_MUSTACHE = frozenset({"CLOSE", "CLOSE_UNESCAPED"})
_RAW_END = re.compile(r"\{\{\{\{/(" + _ID_CHARS + r")\}\}\}\}")
_RAW_NESTED_OPEN = re.compile(r"\{\{\{\{(?!/)")


def tokenize(source: str, name: str, locate: Locator) -> list[Token]:
    """Tokens for ``source``, ending with ``EOF``; raises TemplateSyntaxError on unlexable input."""
    tokens: list[Token] = []
    pos = 0
    end = len(source)
    escaped_mustache = False
    while pos < end:
        if escaped_mustache:
            # ``\{{``: the mustache and the text after it, up to the next opener, are content.
            stop = _emu_end(source, pos)
            tokens.append(Token("CONTENT", source[pos:stop], pos))
            pos = stop
            escaped_mustache = False
            continue
        found = source.find("{{", pos)
        if found < 0:
            tokens.append(Token("CONTENT", source[pos:], pos))
            break
        text = source[pos:found]
        if text.endswith("\\\\"):
            text = text[:-1]
        elif text.endswith("\\"):
            text = text[:-1]
            escaped_mustache = True
        if text:
            tokens.append(Token("CONTENT", text, pos))
        pos = found
        if escaped_mustache:
            continue
        pos = _lex_mustache(source, pos, tokens, name, locate)
    tokens.append(Token("EOF", "", end))
    return tokens


def _emu_end(source: str, pos: int) -> int:
    found = source.find("{{", pos + 2)
    if found < 0:
        return len(source)
    if found - 2 >= pos + 2 and source[found - 2 : found] == "\\\\":
        return found - 2
    if found - 1 >= pos + 2 and source[found - 1] == "\\":
        return found - 1
    return found


def _lex_mustache(source: str, pos: int, tokens: list[Token], name: str, locate: Locator) -> int:
    """Lex one ``{{...}}`` starting at ``pos``; returns the offset after it."""
    for kind, pattern in _OPENERS:
        match = pattern.match(source, pos)
        if match is None:
            continue
        if kind == "LONG_COMMENT":
            close = _LONG_COMMENT_END.search(source, pos + 2)
            if close is None:
                line, column = locate(pos)
                raise TemplateSyntaxError(
                    "expected '--}}' to close this comment", template=name, line=line, column=column
                )
            tokens.append(Token("COMMENT", source[pos : close.end()], pos))
            return close.end()
        tokens.append(Token(kind, match.group(), pos))
        if kind in ("COMMENT", "INVERSE"):
            return match.end()
        pos = match.end()
        break
    else:  # pragma: no cover - the last opener matches any "{{"
        raise AssertionError("unreachable")
    raw = kind == "OPEN_RAW_BLOCK"
    end = len(source)
    while True:
        if pos >= end:
            return pos  # the parser reports the missing close at EOF
        found = _match_inside(source, pos)
        if found is None:
            tokens.append(Token("INVALID", source[pos], pos))
            return pos + 1
        inner_kind, match = found
        text = match.group()
        if inner_kind != "SPACE":
            tokens.append(Token(inner_kind, text, pos))
        pos = match.end()
        if inner_kind in _CLOSES_MUSTACHE:
            return pos
        if inner_kind == "CLOSE_RAW_BLOCK":
            if not raw:
                return pos
            return _lex_raw(source, pos, tokens, name, locate)


def _match_inside(source: str, pos: int) -> tuple[str, re.Match[str]] | None:
    for kind, pattern in _INSIDE:
        match = pattern.match(source, pos)
        if match is not None:
            return kind, match
    return None


def _lex_raw(source: str, pos: int, tokens: list[Token], name: str, locate: Locator) -> int:
    """Raw block body: everything is content until the matching ``{{{{/name}}}}``."""
    depth = 1
    start = pos
    while True:
        found = source.find("{{{{", pos)
        if found < 0:
            line, column = locate(start)
            raise TemplateSyntaxError(
                "expected '{{{{/...}}}}' to close this raw block", template=name, line=line, column=column
            )
        if found > pos:
            tokens.append(Token("CONTENT", source[pos:found], pos))
        closing = _RAW_END.match(source, found)
        if closing is not None:
            depth -= 1
            if depth == 0:
                tokens.append(Token("END_RAW_BLOCK", closing.group(1), found))
                return closing.end()
            tokens.append(Token("CONTENT", closing.group(), found))
            pos = closing.end()
            continue
        if _RAW_NESTED_OPEN.match(source, found) is not None:
            depth += 1
        tokens.append(Token("CONTENT", "{{{{", found))
        pos = found + 4


class Locator:
    """Turns offsets into 1-based (line, column) pairs."""

    def __init__(self, source: str) -> None:
        self._starts = [0]
        index = source.find("\n")
        while index >= 0:
            self._starts.append(index + 1)
            index = source.find("\n", index + 1)

    def __call__(self, pos: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._starts, pos)
        return line, pos - self._starts[line - 1] + 1
