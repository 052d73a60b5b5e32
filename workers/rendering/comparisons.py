"""Mandrill's backtick conditions (```purchases > 3```): a small grammar of our own, never eval.

Grammar::

    expr    := and ( "||" and )*
    and     := unary ( "&&" unary )*
    unary   := "!" unary | compare
    compare := operand ( ( "==" | "!=" | ">" | ">=" | "<" | "<=" ) operand )?
    operand := "(" expr ")" | STRING | NUMBER | true | false | null | PATH

PATH is a Handlebars path (``a.b``, ``../x``, ``@index``, ``@root.y``) resolved exactly as in a
mustache. Comparison rules (Mandrill leaves them open, so we fix them here):

* ``==`` / ``!=``: two values that both read as numbers (numbers, or strings such as ``"3"``)
  compare as numbers; otherwise both sides are printed as a template would print them and the
  strings compared, so ``flag == true`` holds for ``true`` and ``"true"``; a missing value prints
  as the empty string.
* ``<``, ``<=``, ``>``, ``>=``: numbers when both sides read as numbers, otherwise the printed
  strings compare in code-point order.
* A lone operand is tested with Handlebars ``#if`` truthiness (``0``, ``""``, ``[]`` and missing
  values are false).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.errors import TemplateSyntaxError
from workers.rendering.hbs_ast import Loc, PathExpr
from workers.rendering.values import is_empty, js_falsy, js_string

_SEGMENT = r"(?:[^\s!\"#%-,\./;->@\[-\^`\{-~]+|\[[^\]]*\])"
_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<op>==|!=|>=|<=|&&|\|\||[><!()])"
    r"|(?P<string>\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')"
    r"|(?P<number>-?[0-9]+(?:\.[0-9]+)?)(?![^\s=!<>&|()])"
    r"|(?P<path>@?(?:\.\./)*(?:\.|" + _SEGMENT + r")(?:[./]" + _SEGMENT + r")*)"
    r")"
)
_PLAIN_SEGMENT = re.compile(r"[^./\[]+")
_COMPARE = ("==", "!=", ">", ">=", "<", "<=")

PathMaker = Callable[[bool, list[tuple[str, str, str]], Loc], PathExpr]


@dataclass(frozen=True, slots=True)
class Node:
    kind: str  # "or", "and", "not", "cmp", "lit", "path"
    op: str = ""
    args: tuple[Node, ...] = ()
    value: Any = None
    path: PathExpr | None = None


def parse(text: str, name: str, line: int, column: int, make_path: PathMaker) -> Node:
    tokens = _tokenize(text, name, line, column)
    parser = _Parser(tokens, text, name, line, column, make_path)
    tree = parser.expr()
    if parser.index != len(tokens):
        raise parser.error("an operator or the closing backtick")
    return tree


def _tokenize(text: str, name: str, line: int, column: int) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            offset = len(text[pos:]) - len(text[pos:].lstrip())
            raise TemplateSyntaxError(
                f"expected a value or an operator in `{text}`, got {text[pos + offset]!r}",
                template=name,
                line=line,
                column=column + pos + offset,
            )
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(
        self,
        tokens: list[tuple[str, str, int]],
        text: str,
        name: str,
        line: int,
        column: int,
        make_path: PathMaker,
    ) -> None:
        self.tokens = tokens
        self.text = text
        self.index = 0
        self.name = name
        self.line = line
        self.column = column
        self.make_path = make_path

    def error(self, expected: str) -> TemplateSyntaxError:
        if self.index < len(self.tokens):
            _, got, offset = self.tokens[self.index]
            where = repr(got)
        else:
            offset, where = len(self.text), "the closing backtick"
        return TemplateSyntaxError(
            f"expected {expected} in `{self.text}`, got {where}",
            template=self.name,
            line=self.line,
            column=self.column + offset,
        )

    def peek_op(self, *ops: str) -> str | None:
        if self.index < len(self.tokens):
            kind, value, _ = self.tokens[self.index]
            if kind == "op" and value in ops:
                return value
        return None

    def expr(self) -> Node:
        node = self.conjunction()
        while self.peek_op("||"):
            self.index += 1
            node = Node("or", args=(node, self.conjunction()))
        return node

    def conjunction(self) -> Node:
        node = self.unary()
        while self.peek_op("&&"):
            self.index += 1
            node = Node("and", args=(node, self.unary()))
        return node

    def unary(self) -> Node:
        if self.peek_op("!"):
            self.index += 1
            return Node("not", args=(self.unary(),))
        left = self.operand()
        op = self.peek_op(*_COMPARE)
        if op is None:
            return left
        self.index += 1
        return Node("cmp", op=op, args=(left, self.operand()))

    def operand(self) -> Node:
        if self.index >= len(self.tokens):
            raise self.error("a value")
        kind, value, offset = self.tokens[self.index]
        if kind == "op":
            if value != "(":
                raise self.error("a value")
            self.index += 1
            inner = self.expr()
            if not self.peek_op(")"):
                raise self.error("')'")
            self.index += 1
            return inner
        self.index += 1
        if kind == "string":
            return Node("lit", value=re.sub(r"\\(.)", r"\1", value[1:-1]) if "\\" in value else value[1:-1])
        if kind == "number":
            return Node("lit", value=float(value) if "." in value else int(value))
        if value in ("true", "false"):
            return Node("lit", value=value == "true")
        if value in ("null", "undefined"):
            return Node("lit", value=None)
        data = value.startswith("@")
        body = value[1:] if data else value
        segments = _split_path(body)
        loc = Loc(self.line, self.column + offset)
        return Node("path", path=self.make_path(data, segments, loc))


def _split_path(body: str) -> list[tuple[str, str, str]]:
    """``../a.[b c]`` -> [(part, raw, separator)], the shape the Handlebars path builder takes."""
    segments: list[tuple[str, str, str]] = []
    index, separator = 0, ""
    while index < len(body):
        if body.startswith("..", index):
            raw = ".."
        elif body[index] == "[":
            raw = body[index : body.index("]", index) + 1]
        elif body[index] == ".":
            raw = "."
        else:
            found = _PLAIN_SEGMENT.match(body, index)
            assert found is not None
            raw = found.group()
        segments.append((raw[1:-1] if raw.startswith("[") else raw, raw, separator))
        index += len(raw)
        separator = ""
        if index < len(body) and body[index] in "./":
            separator = body[index]
            index += 1
    return segments


Evaluator = Callable[..., Any]


def compile_tree(node: Node, compile_path: Callable[[PathExpr], Evaluator]) -> Evaluator:
    """Turn a parsed condition into a function of the same runtime arguments as a path lookup."""
    if node.kind == "lit":
        constant = node.value
        return lambda *state: constant
    if node.kind == "path":
        assert node.path is not None
        return compile_path(node.path)
    args = [compile_tree(arg, compile_path) for arg in node.args]
    if node.kind == "not":
        (inner,) = args
        return lambda *state: not _truthy(inner(*state))
    if node.kind == "and":
        left, right = args
        return lambda *state: _truthy(left(*state)) and _truthy(right(*state))
    if node.kind == "or":
        left, right = args
        return lambda *state: _truthy(left(*state)) or _truthy(right(*state))
    left, right = args
    op = node.op
    return lambda *state: compare(op, left(*state), right(*state))


def _truthy(value: Any) -> bool:
    if value is True or value is False:
        return value
    return not (js_falsy(value) or is_empty(value))


def _as_number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip()) if value.strip() else None
        except ValueError:
            return None
    return None


def compare(op: str, left: Any, right: Any) -> bool:
    a, b = _as_number(left), _as_number(right)
    ordered: tuple[Any, Any] = (
        (a, b) if a is not None and b is not None else (js_string(left), js_string(right))
    )
    x, y = ordered
    if op == "==":
        return bool(x == y)
    if op == "!=":
        return bool(x != y)
    if op == ">":
        return bool(x > y)
    if op == ">=":
        return bool(x >= y)
    if op == "<":
        return bool(x < y)
    return bool(x <= y)
