"""Parse Handlebars tokens into the syntax tree, with handlebars.js 4.7's grammar and error cases.

Recursive descent over the token list; each function names the grammar rule of ``handlebars.yy``
it implements. Errors carry the template name, the 1-based line and column, and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workers.errors import TemplateSyntaxError
from workers.rendering import comparisons
from workers.rendering.hbs_ast import (
    BlockStmt,
    CommentStmt,
    Comparison,
    Content,
    Expr,
    Literal,
    Loc,
    MustacheStmt,
    PartialBlockStmt,
    PartialStmt,
    PathExpr,
    Program,
    Statement,
    Strip,
    SubExpr,
    Template,
)
from workers.rendering.hbs_lexer import Locator, Token, tokenize
from workers.rendering.hbs_whitespace import strip_whitespace
from workers.rendering.values import js_string

# Deeper block or subexpression nesting is refused at parse time, so that rendering can never run
# out of Python stack on a hostile template.
MAX_NESTING = 120

_HELPER_NAME_KINDS = frozenset({"ID", "DATA", "STRING", "NUMBER", "BOOLEAN", "UNDEFINED", "NULL", "BACKTICK"})
_PROGRAM_ENDS = frozenset(
    {"OPEN_ENDBLOCK", "INVERSE", "OPEN_INVERSE_CHAIN", "OPEN_ELSEIF", "EOF", "END_RAW_BLOCK"}
)
_CHAIN = frozenset({"OPEN_INVERSE_CHAIN", "OPEN_ELSEIF"})
_DESCRIBE = {
    "CLOSE": "'}}'",
    "CLOSE_UNESCAPED": "'}}}'",
    "CLOSE_SEXPR": "')'",
    "CLOSE_RAW_BLOCK": "'}}}}'",
    "CLOSE_BLOCK_PARAMS": "'|'",
    "ID": "an identifier",
    "EOF": "end of template",
    "EQUALS": "'='",
    "OPEN_ENDBLOCK": "a closing '{{/...}}'",
}


def parse(source: str, name: str = "<string>") -> Template:
    """Parse and whitespace-process ``source``; raises TemplateSyntaxError."""
    locate = Locator(source)
    tokens = tokenize(source, name, locate)
    parser = _Parser(tokens, name, locate)
    program = parser.program()
    parser.expect("EOF", "a mustache or text")
    strip_whitespace(program)
    return Template(name=name, program=program, uses_depths=parser.uses_depths, paths=parser.paths)


@dataclass(slots=True)
class _Open:
    token: Token
    path: Expr
    params: list[Expr]
    hash: list[tuple[str, Expr]] | None
    block_params: list[str] | None
    strip: Strip


@dataclass(slots=True)
class _Chain:
    strip: Strip
    program: Program
    chain: bool


def _strip_flags(open_text: str, close_text: str) -> Strip:
    return Strip(
        open=len(open_text) > 2 and open_text[2] == "~",
        close=len(close_text) >= 3 and close_text[-3] == "~",
    )


def _strip_comment(text: str) -> str:
    text = re.sub(r"^\{\{~?!-?-?", "", text)
    return re.sub(r"-?-?~?\}\}\Z", "", text)


def _segment(text: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        return re.sub(r"\\([\\\]])", r"\1", text[1:-1])
    return text


class _Parser:
    def __init__(self, tokens: list[Token], name: str, locate: Locator) -> None:
        self.tokens = tokens
        self.index = 0
        self.name = name
        self.locate = locate
        self.depth = 0
        self.uses_depths = False
        self.paths: list[PathExpr] = []

    # -- token helpers -------------------------------------------------------------------------

    @property
    def peek(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def loc(self, token: Token) -> Loc:
        line, column = self.locate(token.pos)
        return Loc(line, column)

    def error(self, expected: str, token: Token | None = None) -> TemplateSyntaxError:
        token = token or self.peek
        line, column = self.locate(token.pos)
        got = "end of template" if token.kind == "EOF" else repr(token.text)
        return TemplateSyntaxError(
            f"expected {expected}, got {got}", template=self.name, line=line, column=column
        )

    def expect(self, kind: str, what: str | None = None) -> Token:
        if self.peek.kind != kind:
            raise self.error(what or _DESCRIBE.get(kind, kind))
        return self.advance()

    def nest(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            line, column = self.locate(token.pos)
            raise TemplateSyntaxError(
                f"blocks and subexpressions nest deeper than {MAX_NESTING} levels",
                template=self.name,
                line=line,
                column=column,
            )

    # -- program / statement -------------------------------------------------------------------

    def program(self) -> Program:
        body: list[Statement] = []
        while self.peek.kind not in _PROGRAM_ENDS:
            body.append(self.statement())
        return Program(body)

    def statement(self) -> Statement:
        token = self.peek
        kind = token.kind
        if kind == "CONTENT":
            self.advance()
            return Content(token.text, token.text, self.loc(token))
        if kind == "COMMENT":
            self.advance()
            return CommentStmt(
                _strip_comment(token.text), _strip_flags(token.text, token.text), self.loc(token)
            )
        if kind in ("OPEN", "OPEN_UNESCAPED"):
            return self.mustache()
        if kind in ("OPEN_BLOCK", "OPEN_INVERSE"):
            return self.block()
        if kind == "OPEN_PARTIAL":
            return self.partial()
        if kind == "OPEN_PARTIAL_BLOCK":
            return self.partial_block()
        if kind == "OPEN_RAW_BLOCK":
            return self.raw_block()
        raise self.error("text, a mustache, a block or a partial")

    def mustache(self) -> MustacheStmt:
        open_token = self.advance()
        path = self.helper_name()
        params, hash_ = self.params_and_hash()
        close_kind = "CLOSE_UNESCAPED" if open_token.kind == "OPEN_UNESCAPED" else "CLOSE"
        close = self.expect(close_kind)
        flag = open_token.text[3:4] or open_token.text[2:3]
        return MustacheStmt(
            path=path,
            params=params,
            hash=hash_,
            escaped=flag not in ("{", "&"),
            strip=_strip_flags(open_token.text, close.text),
            loc=self.loc(open_token),
            decorator="*" in open_token.text,
        )

    def open_block(self, allow_block_params: bool = True) -> _Open:
        open_token = self.advance()
        if open_token.kind == "OPEN_ELSEIF":
            path: Expr = self.make_path(False, [("if", "if", "")], self.loc(open_token))
        else:
            path = self.helper_name()
        params, hash_ = self.params_and_hash()
        block_params: list[str] | None = None
        if allow_block_params and self.peek.kind == "OPEN_BLOCK_PARAMS":
            self.advance()
            block_params = [_segment(self.expect("ID").text)]
            while self.peek.kind == "ID":
                block_params.append(_segment(self.advance().text))
            self.expect("CLOSE_BLOCK_PARAMS")
        close = self.expect("CLOSE")
        return _Open(open_token, path, params, hash_, block_params, _strip_flags(open_token.text, close.text))

    def close_block(self, opened: _Open) -> tuple[Expr, Strip]:
        open_token = self.expect("OPEN_ENDBLOCK", f"'{{{{/{_original(opened.path)}}}}}'")
        path = self.helper_name()
        close = self.expect("CLOSE")
        if _original(path) != _original(opened.path):
            raise self.error_at(opened.token, f"{_original(opened.path)} doesn't match {_original(path)}")
        return path, _strip_flags(open_token.text, close.text)

    def error_at(self, token: Token, message: str) -> TemplateSyntaxError:
        line, column = self.locate(token.pos)
        return TemplateSyntaxError(message, template=self.name, line=line, column=column)

    def block(self) -> BlockStmt:
        start = self.peek
        self.nest(start)
        inverted = start.kind == "OPEN_INVERSE"
        opened = self.open_block()
        program = self.program()
        chain: _Chain | None = None
        if self.peek.kind == "INVERSE":
            token = self.advance()
            chain = _Chain(_strip_flags(token.text, token.text), self.program(), chain=False)
        elif self.peek.kind in _CHAIN:
            if inverted:
                raise self.error("'{{/...}}' or '{{else}}'")
            chain = self.inverse_chain()
        _, close_strip = self.close_block(opened)
        self.depth -= 1
        block = self.prepare_block(opened, program, chain, close_strip, inverted)
        if block.decorator and chain is not None:
            raise self.error_at(start, "unexpected inverse in a decorator block")
        return block

    def inverse_chain(self) -> _Chain:
        if self.peek.kind == "INVERSE":
            token = self.advance()
            return _Chain(_strip_flags(token.text, token.text), self.program(), chain=False)
        self.nest(self.peek)
        opened = self.open_block()
        program = self.program()
        rest: _Chain | None = None
        if self.peek.kind == "INVERSE" or self.peek.kind in _CHAIN:
            rest = self.inverse_chain()
        self.depth -= 1
        inner = self.prepare_block(opened, program, rest, rest.strip if rest else None, inverted=False)
        return _Chain(opened.strip, Program([inner], chained=True), chain=True)

    def prepare_block(
        self,
        opened: _Open,
        program: Program,
        chain: _Chain | None,
        close_strip: Strip | None,
        inverted: bool,
    ) -> BlockStmt:
        program.block_params = opened.block_params
        inverse: Program | None = None
        inverse_strip: Strip | None = None
        if chain is not None:
            if chain.chain:
                first = chain.program.body[0]
                assert isinstance(first, BlockStmt)
                first.close_strip = close_strip
            inverse_strip = chain.strip
            inverse = chain.program
        main: Program | None = program
        if inverted:
            main, inverse = inverse, program
        return BlockStmt(
            path=opened.path,
            params=opened.params,
            hash=opened.hash,
            program=main,
            inverse=inverse,
            open_strip=opened.strip,
            inverse_strip=inverse_strip,
            close_strip=close_strip,
            loc=self.loc(opened.token),
            decorator="*" in opened.token.text,
        )

    def raw_block(self) -> BlockStmt:
        open_token = self.advance()
        path = self.helper_name()
        params, hash_ = self.params_and_hash()
        self.expect("CLOSE_RAW_BLOCK")
        body: list[Statement] = []
        while self.peek.kind == "CONTENT":
            token = self.advance()
            body.append(Content(token.text, token.text, self.loc(token)))
        end = self.expect("END_RAW_BLOCK", "'{{{{/...}}}}'")
        if end.text != _original(path):
            raise self.error_at(open_token, f"{_original(path)} doesn't match {end.text}")
        return BlockStmt(
            path=path,
            params=params,
            hash=hash_,
            program=Program(body),
            inverse=None,
            open_strip=Strip(),
            inverse_strip=Strip(),
            close_strip=Strip(),
            loc=self.loc(open_token),
        )

    def partial(self) -> PartialStmt:
        open_token = self.advance()
        name = self.partial_name()
        params, hash_ = self.params_and_hash()
        close = self.expect("CLOSE")
        if len(params) > 1:
            raise self.error_at(open_token, f"Unsupported number of partial arguments: {len(params)}")
        return PartialStmt(
            name, params, hash_, _strip_flags(open_token.text, close.text), self.loc(open_token)
        )

    def partial_block(self) -> PartialBlockStmt:
        start = self.peek
        self.nest(start)
        open_token = self.advance()
        name = self.partial_name()
        params, hash_ = self.params_and_hash()
        close = self.expect("CLOSE")
        if len(params) > 1:
            raise self.error_at(open_token, f"Unsupported number of partial arguments: {len(params)}")
        opened = _Open(open_token, name, params, hash_, None, _strip_flags(open_token.text, close.text))
        program = self.program()
        _, close_strip = self.close_block(opened)
        self.depth -= 1
        return PartialBlockStmt(name, params, hash_, program, opened.strip, close_strip, self.loc(open_token))

    # -- expressions ---------------------------------------------------------------------------

    def partial_name(self) -> Expr:
        if self.peek.kind == "OPEN_SEXPR":
            return self.sexpr()
        return self.helper_name()

    def params_and_hash(self) -> tuple[list[Expr], list[tuple[str, Expr]] | None]:
        params: list[Expr] = []
        while True:
            kind = self.peek.kind
            if kind == "ID" and self.tokens[self.index + 1].kind == "EQUALS":
                break
            if kind == "OPEN_SEXPR":
                params.append(self.sexpr())
            elif kind in _HELPER_NAME_KINDS:
                params.append(self.helper_name())
            else:
                return params, None
        pairs: list[tuple[str, Expr]] = []
        while self.peek.kind == "ID" and self.tokens[self.index + 1].kind == "EQUALS":
            key = _segment(self.advance().text)
            self.advance()
            if self.peek.kind == "OPEN_SEXPR":
                pairs.append((key, self.sexpr()))
            elif self.peek.kind in _HELPER_NAME_KINDS:
                pairs.append((key, self.helper_name()))
            else:
                raise self.error("a value after '='")
        return params, pairs

    def sexpr(self) -> SubExpr:
        open_token = self.advance()
        self.nest(open_token)
        path = self.helper_name()
        params, hash_ = self.params_and_hash()
        self.expect("CLOSE_SEXPR")
        self.depth -= 1
        return SubExpr(path, params, hash_, self.loc(open_token))

    def helper_name(self) -> Expr:
        token = self.peek
        kind = token.kind
        loc = self.loc(token)
        if kind == "ID":
            return self.path(data=False)
        if kind == "DATA":
            self.advance()
            if self.peek.kind != "ID":
                raise self.error("an identifier after '@'")
            return self.path(data=True)
        if kind == "STRING":
            self.advance()
            quote = token.text[0]
            value = token.text[1:-1].replace("\\" + quote, quote)
            return Literal(value, value, loc)
        if kind == "NUMBER":
            self.advance()
            number: float | int = float(token.text) if "." in token.text else int(token.text)
            if isinstance(number, float) and number.is_integer():
                number = int(number)
            return Literal(number, js_string(number), loc)
        if kind == "BOOLEAN":
            self.advance()
            return Literal(token.text == "true", token.text, loc)
        if kind in ("UNDEFINED", "NULL"):
            self.advance()
            return Literal(None, token.text, loc)
        if kind == "BACKTICK":
            self.advance()
            line, column = loc.line, loc.column + 1
            tree = comparisons.parse(token.text[1:-1], self.name, line, column, self.make_path)
            return Comparison(tree, token.text, loc)
        raise self.error("an identifier, a literal or a subexpression")

    def path(self, data: bool) -> PathExpr:
        first = self.expect("ID")
        segments: list[tuple[str, str, str]] = [(_segment(first.text), first.text, "")]
        while self.peek.kind == "SEP":
            separator = self.advance().text
            token = self.expect("ID", "an identifier after '" + separator + "'")
            segments.append((_segment(token.text), token.text, separator))
        return self.make_path(data, segments, self.loc(first))

    def make_path(self, data: bool, segments: list[tuple[str, str, str]], loc: Loc) -> PathExpr:
        original = "@" if data else ""
        parts: list[str] = []
        depth = 0
        for part, raw, separator in segments:
            literal = raw != part
            original += separator + part
            if not literal and part in ("..", ".", "this"):
                if parts:
                    raise TemplateSyntaxError(
                        f"Invalid path: {original}", template=self.name, line=loc.line, column=loc.column
                    )
                if part == "..":
                    depth += 1
            else:
                parts.append(part)
        if depth:
            self.uses_depths = True
        path = PathExpr(data=data, depth=depth, parts=parts, original=original, loc=loc)
        self.paths.append(path)
        return path


def _original(expr: Expr) -> str:
    if isinstance(expr, PathExpr):
        return expr.original
    if isinstance(expr, Literal):
        return expr.original
    if isinstance(expr, Comparison):
        return expr.source
    return "(subexpression)"
