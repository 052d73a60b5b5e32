"""Compile a Handlebars syntax tree into nested Python closures; no template text is ever executed.

Every decision handlebars.js makes at compile time (is ``{{name}}`` a helper call or a lookup, is a
path a block parameter, which context ``../`` reaches) is made here once, so rendering is only
dictionary lookups, string escapes and list joins. Template text is held in closures as constants.
The classification rules mirror handlebars.js 4.7's ``compiler.js`` (``classifySexpr``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from workers.errors import TemplateError, TemplateSyntaxError
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
    SubExpr,
    Template,
)
from workers.rendering.hbs_helpers import HELPERS, each_items
from workers.rendering.hbs_runtime import (
    ENV_KEY,
    NOOP,
    Emitter,
    Env,
    Evaluator,
    Helper,
    Options,
    bind,
    invoke_partial,
)
from workers.rendering.values import (
    SafeString,
    escape_html,
    get_property,
    is_array,
    is_empty,
    js_falsy,
    js_string,
)

_SCOPED = re.compile(r"^\.|this\b")

# A compiled template: (context, data frame) -> text. Data frames carry the Env under ENV_KEY.
CompiledTemplate = Callable[[Any, dict[Any, Any]], str]


def compile_template(
    template: Template, *, escape: bool = True, helpers: Mapping[str, Helper] = HELPERS
) -> CompiledTemplate:
    compiler = _Compiler(template, escape, helpers)
    program, _inlines = compiler.program(template.program)
    uses_depths = template.uses_depths

    def render(context: Any, data: dict[Any, Any]) -> str:
        return program(context, data, (None, None), (context,) if uses_depths else None)

    return render


def _constant(text: str) -> Emitter:
    return lambda c, d, b, p: text


def _empty(c: Any, d: dict[Any, Any], b: Any, p: Any) -> str:
    return ""


def _output(value: Any) -> str:
    return "" if value is None else js_string(value)


def _output_escaped(value: Any) -> str:
    if type(value) is str:
        return escape_html(value)
    if value is None:
        return ""
    if isinstance(value, SafeString):
        return str(value)
    return escape_html(js_string(value))


class _Compiler:
    def __init__(self, template: Template, escape: bool, helpers: Mapping[str, Helper]) -> None:
        self.name = template.name
        self.escape = escape
        self.helpers = helpers
        self.uses_depths = template.uses_depths
        # Declared block params of each enclosing Program, innermost first (handlebars.js's
        # options.blockParams); runtime pushes one level per program invocation to match.
        self.block_params: list[list[str] | None] = []

    def error(self, message: str, loc: Loc) -> TemplateSyntaxError:
        return TemplateSyntaxError(message, template=self.name, line=loc.line, column=loc.column)

    def located(self, function: Evaluator, loc: Loc) -> Evaluator:
        """Attach the template position to render-time errors raised inside ``function``."""
        name = self.name

        def run(c: Any, d: dict[Any, Any], b: Any, p: Any) -> Any:
            try:
                return function(c, d, b, p)
            except TemplateError as error:
                if error.line is None:
                    raise TemplateError(
                        error.detail, template=name, line=loc.line, column=loc.column
                    ) from None
                raise

        return run

    # -- programs ------------------------------------------------------------------------------

    def program(self, program: Program | None) -> tuple[Emitter, dict[str, Any]]:
        """(emitter, inline partial declarations) for a Program node."""
        if program is None:
            return _empty, {}
        self.block_params.insert(0, program.block_params)
        try:
            emitters: list[Emitter] = []
            texts: list[str] = []
            inlines: dict[str, Emitter] = {}
            for statement in program.body:
                if isinstance(statement, Content):
                    texts.append(statement.value)
                    continue
                if isinstance(statement, BlockStmt) and statement.decorator:
                    self.inline_partial(statement, inlines)
                    continue
                emitter = self.statement(statement)
                if emitter is None:
                    continue
                if texts:
                    joined = "".join(texts)
                    if joined:
                        emitters.append(_constant(joined))
                    texts = []
                emitters.append(emitter)
            if texts and "".join(texts):
                emitters.append(_constant("".join(texts)))
        finally:
            self.block_params.pop(0)
        body = _sequence(emitters)
        if not inlines:
            return body, {}
        return _with_inlines(body, inlines), inlines

    def inline_partial(self, block: BlockStmt, inlines: dict[str, Emitter]) -> None:
        path = block.path
        if not (isinstance(path, PathExpr) and path.parts == ["inline"] and not path.data):
            raise self.error(f"unsupported decorator '*{_original(path)}'", block.loc)
        if len(block.params) != 1 or not isinstance(block.params[0], Literal):
            raise self.error("'*inline' takes one partial name", block.loc)
        program, _ = self.program(block.program)
        inlines[js_string(block.params[0].value)] = program

    def statement(self, node: Statement) -> Emitter | None:
        if isinstance(node, CommentStmt):
            return None
        if isinstance(node, MustacheStmt):
            if node.decorator:
                raise self.error(f"unsupported decorator '*{_original(node.path)}'", node.loc)
            return self.mustache(node)
        if isinstance(node, BlockStmt):
            return self.block(node)
        if isinstance(node, PartialStmt):
            return self.partial(node.name, node.params, node.hash, node.indent, None, node.loc)
        if isinstance(node, PartialBlockStmt):
            return self.partial(node.name, node.params, node.hash, "", node.program, node.loc)
        raise AssertionError(f"unknown statement {node!r}")  # pragma: no cover

    # -- classification ------------------------------------------------------------------------

    def block_param_index(self, name: str) -> tuple[int, int] | None:
        for depth, declared in enumerate(self.block_params):
            if declared and name in declared:
                return depth, declared.index(name)
        return None

    def is_simple(self, path: Expr) -> bool:
        return (
            isinstance(path, PathExpr)
            and len(path.parts) == 1
            and not _SCOPED.search(path.original)
            and not path.depth
        )

    def classify(self, node: MustacheStmt | BlockStmt | SubExpr) -> str:
        path = node.path
        simple = self.is_simple(path)
        block_param = simple and self.block_param_index(path.parts[0]) is not None  # type: ignore[union-attr]
        is_helper = not block_param and (isinstance(node, SubExpr) or bool(node.params) or bool(node.hash))
        eligible = not block_param and (is_helper or simple)
        if eligible and not is_helper and path.parts[0] in self.helpers:  # type: ignore[union-attr]
            is_helper = True
        if is_helper:
            return "helper"
        return "ambiguous" if eligible else "simple"

    # -- expressions ---------------------------------------------------------------------------

    def expr(self, node: Expr) -> Evaluator:
        if isinstance(node, Literal):
            value = node.value
            return lambda c, d, b, p: value
        if isinstance(node, PathExpr):
            return self.path(node)
        if isinstance(node, SubExpr):
            return self.call(node, None, None)
        tree = node.tree
        assert isinstance(tree, comparisons.Node)
        return comparisons.compile_tree(tree, self.path)

    def path(self, path: PathExpr) -> Evaluator:
        parts = tuple(path.parts)
        depth = path.depth
        scoped = bool(_SCOPED.search(path.original))
        found = None if (depth or scoped or not parts) else self.block_param_index(parts[0])
        if found is not None:
            level, position = found
            rest = parts[1:]

            def block_param(c: Any, d: dict[Any, Any], b: Any, p: Any) -> Any:
                for _ in range(level):
                    b = b[1]
                values = b[0]
                value = values[position] if values is not None and position < len(values) else None
                return _walk(value, rest)

            return block_param
        if not parts:
            if depth == 0:
                return lambda c, d, b, p: c
            return lambda c, d, b, p: p[depth] if p is not None and depth < len(p) else None
        if path.data:

            def data_lookup(c: Any, d: dict[Any, Any], b: Any, p: Any) -> Any:
                frame: Any = d
                for _ in range(depth):
                    frame = frame.get("_parent") if isinstance(frame, dict) else None
                if frame is None:
                    return None
                first = frame.get(parts[0])
                return _walk(first, parts[1:])

            return data_lookup
        if depth:

            def parent_lookup(c: Any, d: dict[Any, Any], b: Any, p: Any) -> Any:
                base = p[depth] if p is not None and depth < len(p) else None
                return _walk(base, parts)

            return parent_lookup
        if len(parts) == 1:
            key = parts[0]

            def lookup(c: Any, d: dict[Any, Any], b: Any, p: Any) -> Any:
                if type(c) is dict:
                    return c.get(key)
                return get_property(c, key)

            return lookup
        if len(parts) == 2:
            first_key, second_key = parts

            def lookup2(c: Any, d: dict[Any, Any], b: Any, p: Any) -> Any:
                value = c.get(first_key) if type(c) is dict else get_property(c, first_key)
                if value is None:
                    return None
                return value.get(second_key) if type(value) is dict else get_property(value, second_key)

            return lookup2
        return lambda c, d, b, p: _walk(c, parts)

    def arguments(
        self, node: MustacheStmt | BlockStmt | SubExpr
    ) -> tuple[list[Evaluator], list[tuple[str, Evaluator]]]:
        params = [self.expr(param) for param in node.params]
        pairs = [(key, self.expr(value)) for key, value in (node.hash or [])]
        return params, pairs

    def call(
        self,
        node: MustacheStmt | BlockStmt | SubExpr,
        program: Emitter | None,
        inverse: Emitter | None,
    ) -> Evaluator:
        """Evaluate a helper-type expression (``{{helper args}}``, ``(sub expr)``, block helpers)."""
        path = _as_path(node.path)
        if path is None:
            return self.expr(node.path)
        name = path.original
        helper = self.helpers.get(path.parts[0]) if self.is_simple(path) else None
        params, pairs = self.arguments(node)
        if helper is None:
            value_of = self.path(path)
            has_params = bool(params)

            def missing(c: Any, d: dict[Any, Any], b: Any, p: Any) -> Any:
                value = value_of(c, d, b, p)
                if not js_falsy(value):
                    raise TemplateError(f"{name} is not a helper; data values cannot be called")
                if has_params:
                    raise TemplateError(f'Missing helper: "{name}"')
                return None

            return self.located(missing, node.loc)
        fn_program = program
        inverse_program = inverse

        def invoke(c: Any, d: dict[Any, Any], b: Any, p: Any) -> Any:
            args = [param(c, d, b, p) for param in params]
            hash_ = {key: value(c, d, b, p) for key, value in pairs}
            options = Options(
                name,
                bind(fn_program, d, b, p) if fn_program is not None else NOOP,
                bind(inverse_program, d, b, p) if inverse_program is not None else NOOP,
                d,
                hash_,
            )
            return helper(c, args, hash_, options)

        return self.located(invoke, node.loc)

    # -- statements ----------------------------------------------------------------------------

    def mustache(self, node: MustacheStmt) -> Emitter:
        kind = self.classify(node) if _as_path(node.path) is not None else "value"
        if kind == "helper":
            evaluate = self.call(node, None, None)
        elif kind == "value":
            evaluate = self.expr(node.path)
        else:
            path = _as_path(node.path)
            assert path is not None
            fused = self.fused_lookup(path, node.escaped and self.escape)
            if fused is not None:
                return fused
            evaluate = self.path(path)
        if node.escaped and self.escape:

            def escaped(c: Any, d: dict[Any, Any], b: Any, p: Any) -> str:
                value = evaluate(c, d, b, p)
                if type(value) is str:
                    return escape_html(value)
                return _output_escaped(value)

            return escaped
        return lambda c, d, b, p: _output(evaluate(c, d, b, p))

    def fused_lookup(self, path: PathExpr, escape: bool) -> Emitter | None:
        """``{{name}}`` on the current context in one closure: the commonest node by far."""
        if path.data or path.depth or len(path.parts) != 1 or _SCOPED.search(path.original):
            return None
        if self.block_param_index(path.parts[0]) is not None:
            return None
        key = path.parts[0]
        if escape:

            def escaped_field(c: Any, d: dict[Any, Any], b: Any, p: Any) -> str:
                value = c.get(key) if type(c) is dict else get_property(c, key)
                if type(value) is str:
                    return escape_html(value)
                return _output_escaped(value)

            return escaped_field

        def raw_field(c: Any, d: dict[Any, Any], b: Any, p: Any) -> str:
            value = c.get(key) if type(c) is dict else get_property(c, key)
            if type(value) is str:
                return value
            return _output(value)

        return raw_field

    def block(self, node: BlockStmt) -> Emitter:
        program, _ = self.program(node.program) if node.program is not None else (None, {})
        inverse, _ = self.program(node.inverse) if node.inverse is not None else (None, {})
        path = _as_path(node.path)
        kind = self.classify(node) if path is not None else "value"
        if kind == "helper":
            assert path is not None
            fast = self.known_block(node, path, program, inverse)
            if fast is not None:
                return fast
            evaluate = self.call(node, program, inverse)
            return lambda c, d, b, p: _output(evaluate(c, d, b, p))
        value_of = self.path(path) if path is not None else self.expr(node.path)
        return self.block_helper_missing(value_of, program, inverse, node.loc)

    def block_helper_missing(
        self, value_of: Evaluator, program: Emitter | None, inverse: Emitter | None, loc: Loc
    ) -> Emitter:
        """Mustache-style sections: handlebars.js ``blockHelperMissing``."""
        fn_program = program or _empty
        inverse_program = inverse or _empty
        uses_depths = self.uses_depths

        def section(c: Any, d: dict[Any, Any], b: Any, p: Any) -> str:
            value = value_of(c, d, b, p)
            if value is True:
                return fn_program(c, d, (None, b), p)
            if value is False or value is None:
                return inverse_program(c, d, (None, b), p)
            if is_array(value):
                if not value:
                    return inverse_program(c, d, (None, b), p)
                options = Options("", bind(fn_program, d, b, p), bind(inverse_program, d, b, p), d, {})
                return each_items(c, value, options)
            depths = p
            if uses_depths and value is not p[0]:
                depths = (value, *p)
            return fn_program(value, d, (None, b), depths)

        return section

    def known_block(
        self, node: BlockStmt, path: PathExpr, program: Emitter | None, inverse: Emitter | None
    ) -> Emitter | None:
        """Direct code for ``#if``, ``#unless``, ``#each`` and ``#with`` in their usual forms."""
        name = path.parts[0] if self.is_simple(path) else None
        if name not in ("if", "unless", "each", "with") or self.helpers.get(name) is not HELPERS.get(name):
            return None
        if len(node.params) != 1:
            return None
        pairs = node.hash or []
        if name in ("if", "unless") and any(key != "includeZero" for key, _ in pairs):
            return None
        if name in ("each", "with") and pairs:
            return None
        condition = self.expr(node.params[0])
        fn_program = program or _empty
        inverse_program = inverse or _empty
        if name in ("if", "unless"):
            include_zero = self.expr(pairs[0][1]) if pairs else None
            then, otherwise = (fn_program, inverse_program) if name == "if" else (inverse_program, fn_program)

            def conditional(c: Any, d: dict[Any, Any], b: Any, p: Any) -> str:
                value = condition(c, d, b, p)
                if value is True:
                    return then(c, d, (None, b), p)
                zero_ok = include_zero is not None and not js_falsy(include_zero(c, d, b, p))
                if (not zero_ok and js_falsy(value)) or is_empty(value):
                    return otherwise(c, d, (None, b), p)
                return then(c, d, (None, b), p)

            return conditional
        if name == "with":
            uses_depths = self.uses_depths

            def with_block(c: Any, d: dict[Any, Any], b: Any, p: Any) -> str:
                value = condition(c, d, b, p)
                if is_empty(value):
                    return inverse_program(c, d, (None, b), p)
                depths = p
                if uses_depths and value is not p[0]:
                    depths = (value, *p)
                return fn_program(value, d, ([value], b), depths)

            return with_block
        uses_depths = self.uses_depths

        def each_block(c: Any, d: dict[Any, Any], b: Any, p: Any) -> str:
            value = condition(c, d, b, p)
            if type(value) is list and not uses_depths:
                if not value:
                    return inverse_program(c, d, (None, b), p)
                frame = dict(d)
                frame["_parent"] = d
                last = len(value) - 1
                out = []
                for index, item in enumerate(value):
                    frame["key"] = index
                    frame["index"] = index
                    frame["first"] = index == 0
                    frame["last"] = index == last
                    out.append(fn_program(item, frame, ([item, index], b), p))
                return "".join(out)
            options = Options("each", bind(fn_program, d, b, p), bind(inverse_program, d, b, p), d, {})
            return each_items(c, value, options)

        return each_block

    def partial(
        self,
        name_expr: Expr,
        params: list[Expr],
        hash_: list[tuple[str, Expr]] | None,
        indent: str,
        block: Program | None,
        loc: Loc,
    ) -> Emitter:
        if isinstance(name_expr, SubExpr):
            dynamic_name: Evaluator | None = self.call(name_expr, None, None)
            static_name = ""
        else:
            dynamic_name = None
            static_name = _original(name_expr)
        context_of = self.expr(params[0]) if params else None
        pairs = [(key, self.expr(value)) for key, value in (hash_ or [])]
        block_program, block_inlines = self.program(block) if block is not None else (None, {})
        template_name = self.name

        def call_partial(c: Any, d: dict[Any, Any], b: Any, p: Any) -> str:
            env: Env = d[ENV_KEY]
            name = js_string(dynamic_name(c, d, b, p)) if dynamic_name is not None else static_name
            found = d.get("partial-block") if name == "@partial-block" else env.find(name)
            context = context_of(c, d, b, p) if context_of is not None else c
            if pairs:
                merged = dict(context) if isinstance(context, Mapping) else {}
                for key, value in pairs:
                    merged[key] = value(c, d, b, p)
                context = merged
            block_fn = bind(block_program, d, b, p) if block_program is not None else None
            inlines = {key: bind(value, d, b, p) for key, value in block_inlines.items()}
            try:
                result = invoke_partial(env, name, found, context, d, block_fn, inlines)
            except TemplateError as error:
                if error.line is None:
                    raise TemplateError(
                        error.detail, template=template_name, line=loc.line, column=loc.column
                    ) from None
                raise
            if indent:
                lines = result.split("\n")
                for index, line in enumerate(lines):
                    if not line and index + 1 == len(lines):
                        break
                    lines[index] = indent + line
                result = "\n".join(lines)
            return result

        return call_partial


def _walk(value: Any, parts: tuple[str, ...]) -> Any:
    for key in parts:
        if value is None:
            return None
        value = value.get(key) if type(value) is dict else get_property(value, key)
    return value


def _sequence(emitters: list[Emitter]) -> Emitter:
    if not emitters:
        return _empty
    if len(emitters) == 1:
        return emitters[0]
    if len(emitters) == 2:
        first, second = emitters
        return lambda c, d, b, p: first(c, d, b, p) + second(c, d, b, p)
    items = tuple(emitters)
    return lambda c, d, b, p: "".join([emit(c, d, b, p) for emit in items])


def _with_inlines(body: Emitter, inlines: dict[str, Emitter]) -> Emitter:
    """Run ``body`` with this program's ``{{#*inline}}`` partials in scope (handlebars.js decorator)."""

    def run(c: Any, d: dict[Any, Any], b: Any, p: Any) -> str:
        env: Env = d[ENV_KEY]
        saved = env.partials
        env.partials = {**saved, **{name: bind(program, d, b, p) for name, program in inlines.items()}}
        try:
            return body(c, d, b, p)
        finally:
            env.partials = saved

    return run


def _as_path(expr: Expr) -> PathExpr | None:
    """handlebars.js ``transformLiteralToPath``: ``{{"name"}}`` and ``{{12}}`` look up a key."""
    if isinstance(expr, PathExpr):
        return expr
    if isinstance(expr, Literal):
        return PathExpr(data=False, depth=0, parts=[expr.original], original=expr.original, loc=expr.loc)
    return None


def _original(expr: Expr) -> str:
    if isinstance(expr, (PathExpr, Literal)):
        return expr.original
    if isinstance(expr, Comparison):
        return expr.source
    return "(subexpression)"
