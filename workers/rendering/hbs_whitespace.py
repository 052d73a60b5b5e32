"""Standalone-line and ``~`` whitespace stripping, a line-by-line port of handlebars.js's WhitespaceControl.

Template authors rely on ``{{#each}}`` on a line of its own leaving no blank line behind; the exact
rules (which newline goes, what counts as standalone, partial indentation) are subtle enough that
only a faithful port reproduces handlebars.js output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workers.rendering.hbs_ast import (
    BlockStmt,
    CommentStmt,
    Content,
    MustacheStmt,
    PartialBlockStmt,
    PartialStmt,
    Program,
    Statement,
)

_PREV_WS = re.compile(r"\r?\n\s*?\Z")
_PREV_WS_ROOT = re.compile(r"(^|\r?\n)\s*?\Z")
_NEXT_WS = re.compile(r"^\s*?\r?\n")
_NEXT_WS_ROOT = re.compile(r"^\s*?(\r?\n|\Z)")
_TRAILING_INDENT = re.compile(r"([ \t]+\Z)")


@dataclass(slots=True)
class _Strip:
    open: bool = False
    close: bool = False
    open_standalone: bool = False
    close_standalone: bool = False
    inline_standalone: bool = False


def strip_whitespace(program: Program) -> None:
    _Visitor().program(program)


class _Visitor:
    def __init__(self) -> None:
        self.root_seen = False

    def program(self, program: Program) -> None:
        is_root = not self.root_seen
        self.root_seen = True
        body = program.body
        for i, current in enumerate(body):
            strip = self.accept(current)
            if strip is None:
                continue
            prev_ws = _is_prev_whitespace(body, i, is_root)
            next_ws = _is_next_whitespace(body, i, is_root)
            open_standalone = strip.open_standalone and prev_ws
            close_standalone = strip.close_standalone and next_ws
            inline_standalone = strip.inline_standalone and prev_ws and next_ws
            if strip.close:
                _omit_right(body, i, True)
            if strip.open:
                _omit_left(body, i, True)
            if inline_standalone:
                _omit_right(body, i)
                if _omit_left(body, i) and isinstance(current, PartialStmt):
                    previous = body[i - 1]
                    assert isinstance(previous, Content)
                    found = _TRAILING_INDENT.search(previous.original)
                    current.indent = found.group(1) if found else ""
            if open_standalone and isinstance(current, (BlockStmt, PartialBlockStmt)):
                inner = _first_program(current)
                if inner is not None:
                    _omit_right(inner.body)
                _omit_left(body, i)
            if close_standalone and isinstance(current, (BlockStmt, PartialBlockStmt)):
                _omit_right(body, i)
                inner = _last_program(current)
                if inner is not None:
                    _omit_left(inner.body)

    def accept(self, node: Statement) -> _Strip | None:
        if isinstance(node, (BlockStmt, PartialBlockStmt)):
            return self.block(node)
        if isinstance(node, MustacheStmt):
            return _Strip(open=node.strip.open, close=node.strip.close)
        if isinstance(node, (PartialStmt, CommentStmt)):
            return _Strip(open=node.strip.open, close=node.strip.close, inline_standalone=True)
        return None

    def block(self, block: BlockStmt | PartialBlockStmt) -> _Strip:
        if isinstance(block, PartialBlockStmt):
            self.program(block.program)
            program: Program = block.program
            inverse: Program | None = None
        else:
            if block.program is not None:
                self.program(block.program)
            if block.inverse is not None:
                self.program(block.inverse)
            chosen = block.program or block.inverse
            assert chosen is not None
            program = chosen
            inverse = block.inverse if block.program is not None else None
        first_inverse = last_inverse = inverse
        if inverse is not None and inverse.chained:
            head = inverse.body[0]
            assert isinstance(head, BlockStmt) and head.program is not None
            first_inverse = head.program
            while last_inverse is not None and last_inverse.chained:
                tail = last_inverse.body[-1]
                assert isinstance(tail, BlockStmt)
                last_inverse = tail.program
        close_strip = block.close_strip
        strip = _Strip(
            open=block.open_strip.open,
            close=bool(close_strip and close_strip.close),
            open_standalone=bool(_is_next_whitespace(program.body)),
            close_standalone=bool(_is_prev_whitespace((first_inverse or program).body)),
        )
        if block.open_strip.close:
            _omit_right(program.body, None, True)
        if inverse is not None and isinstance(block, BlockStmt):
            inverse_strip = block.inverse_strip
            assert first_inverse is not None and last_inverse is not None
            if inverse_strip is not None and inverse_strip.open:
                _omit_left(program.body, None, True)
            if inverse_strip is not None and inverse_strip.close:
                _omit_right(first_inverse.body, None, True)
            if close_strip is not None and close_strip.open:
                _omit_left(last_inverse.body, None, True)
            if _is_prev_whitespace(program.body) and _is_next_whitespace(first_inverse.body):
                _omit_left(program.body)
                _omit_right(first_inverse.body)
        elif close_strip is not None and close_strip.open:
            _omit_left(program.body, None, True)
        return strip


def _first_program(node: BlockStmt | PartialBlockStmt) -> Program | None:
    if isinstance(node, PartialBlockStmt):
        return node.program
    return node.program or node.inverse


def _last_program(node: BlockStmt | PartialBlockStmt) -> Program | None:
    if isinstance(node, PartialBlockStmt):
        return node.program
    return node.inverse or node.program


def _is_prev_whitespace(body: list[Statement], i: int | None = None, is_root: bool = False) -> bool | None:
    if i is None:
        i = len(body)
    prev = body[i - 1] if i - 1 >= 0 else None
    sibling = body[i - 2] if i - 2 >= 0 else None
    if prev is None:
        return is_root
    if isinstance(prev, Content):
        pattern = _PREV_WS if (sibling is not None or not is_root) else _PREV_WS_ROOT
        return pattern.search(prev.original) is not None
    return None


def _is_next_whitespace(body: list[Statement], i: int | None = None, is_root: bool = False) -> bool | None:
    if i is None:
        i = -1
    nxt = body[i + 1] if i + 1 < len(body) else None
    sibling = body[i + 2] if i + 2 < len(body) else None
    if nxt is None:
        return is_root
    if isinstance(nxt, Content):
        pattern = _NEXT_WS if (sibling is not None or not is_root) else _NEXT_WS_ROOT
        return pattern.search(nxt.original) is not None
    return None


def _omit_right(body: list[Statement], i: int | None = None, multiple: bool = False) -> None:
    index = 0 if i is None else i + 1
    if index >= len(body):
        return
    current = body[index]
    if not isinstance(current, Content) or (not multiple and current.right_stripped):
        return
    original = current.value
    current.value = re.sub(r"^\s+", "", original) if multiple else re.sub(r"^[ \t]*\r?\n?", "", original)
    current.right_stripped = current.value != original


def _omit_left(body: list[Statement], i: int | None = None, multiple: bool = False) -> bool:
    index = len(body) - 1 if i is None else i - 1
    if index < 0 or index >= len(body):
        return False
    current = body[index]
    if not isinstance(current, Content) or (not multiple and current.left_stripped):
        return False
    original = current.value
    current.value = re.sub(r"\s+\Z", "", original) if multiple else re.sub(r"[ \t]+\Z", "", original)
    current.left_stripped = current.value != original
    return current.left_stripped
