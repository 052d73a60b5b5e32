"""The Handlebars syntax tree, shaped like handlebars.js's AST so its whitespace rules port directly.

Content nodes are mutable on purpose: standalone-line and ``~`` stripping rewrite their text after
parsing, exactly as handlebars.js's WhitespaceControl pass does. Nothing else changes after parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Loc:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True, slots=True)
class Strip:
    open: bool = False
    close: bool = False


@dataclass(slots=True)
class PathExpr:
    data: bool
    depth: int
    parts: list[str]
    original: str
    loc: Loc


@dataclass(slots=True)
class Literal:
    """String, number, boolean, undefined or null; ``original`` is the source spelling."""

    value: object
    original: str
    loc: Loc


@dataclass(slots=True)
class Comparison:
    """Mandrill's backtick expression, e.g. ```purchases > 3```; ``tree`` comes from comparisons.py."""

    tree: object
    source: str
    loc: Loc


@dataclass(slots=True)
class SubExpr:
    path: Expr
    params: list[Expr]
    hash: list[tuple[str, Expr]] | None
    loc: Loc


Expr = PathExpr | Literal | SubExpr | Comparison


@dataclass(slots=True)
class Content:
    value: str
    original: str
    loc: Loc
    left_stripped: bool = False
    right_stripped: bool = False


@dataclass(slots=True)
class CommentStmt:
    value: str
    strip: Strip
    loc: Loc


@dataclass(slots=True)
class MustacheStmt:
    path: Expr
    params: list[Expr]
    hash: list[tuple[str, Expr]] | None
    escaped: bool
    strip: Strip
    loc: Loc
    decorator: bool = False


@dataclass(slots=True)
class Program:
    body: list[Statement]
    block_params: list[str] | None = None
    chained: bool = False


@dataclass(slots=True)
class BlockStmt:
    path: Expr
    params: list[Expr]
    hash: list[tuple[str, Expr]] | None
    program: Program | None
    inverse: Program | None
    open_strip: Strip
    inverse_strip: Strip | None
    close_strip: Strip | None
    loc: Loc
    decorator: bool = False


@dataclass(slots=True)
class PartialStmt:
    name: Expr
    params: list[Expr]
    hash: list[tuple[str, Expr]] | None
    strip: Strip
    loc: Loc
    indent: str = ""


@dataclass(slots=True)
class PartialBlockStmt:
    name: Expr
    params: list[Expr]
    hash: list[tuple[str, Expr]] | None
    program: Program
    open_strip: Strip
    close_strip: Strip
    loc: Loc


Statement = Content | CommentStmt | MustacheStmt | BlockStmt | PartialStmt | PartialBlockStmt


@dataclass(slots=True)
class Template:
    name: str
    program: Program
    uses_depths: bool = False
    paths: list[PathExpr] = field(default_factory=list)
