"""Compile Handlebars source once and render it many times: the engine's entry point for one template."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from workers.errors import TemplateError
from workers.rendering.hbs_ast import PathExpr
from workers.rendering.hbs_compiler import CompiledTemplate, compile_template
from workers.rendering.hbs_helpers import HELPERS
from workers.rendering.hbs_parser import parse
from workers.rendering.hbs_runtime import ENV_KEY, Env, Helper

# Finds a partial by name for one render: a function (context, data frame) -> text, or None.
PartialLoader = Callable[[str], Any]


def _no_partials(name: str) -> Any:
    return None


class HandlebarsTemplate:
    """A parsed and compiled Handlebars template; immutable and safe to share between threads."""

    __slots__ = ("_compiled", "name", "paths")

    def __init__(
        self,
        source: str,
        *,
        name: str = "<string>",
        escape: bool = True,
        helpers: Mapping[str, Helper] = HELPERS,
    ) -> None:
        """``helpers`` defaults to handlebars.js's built-ins plus Mandrill's; the conformance
        tests pass the built-ins alone to compare with plain handlebars.js."""
        template = parse(source, name)
        self.name = name
        self.paths: tuple[PathExpr, ...] = tuple(template.paths)
        self._compiled: CompiledTemplate = compile_template(template, escape=escape, helpers=helpers)

    def render(
        self, data: Any, partials: PartialLoader = _no_partials, *, data_vars: Mapping[str, Any] | None = None
    ) -> str:
        """Render for ``data``; ``data_vars`` seeds ``@`` variables (handlebars.js's runtime ``data``)."""
        env = Env(partials={}, load_partial=partials)
        frame: dict[Any, Any] = {"root": data}
        if data_vars:
            frame = {**data_vars, "_parent": dict(data_vars)}
            frame.setdefault("root", data)
        frame[ENV_KEY] = env
        try:
            return self._compiled(data, frame)
        except RecursionError:
            raise TemplateError("template nests too deeply to render", template=self.name) from None

    def as_partial(self) -> Callable[[Any, dict[Any, Any]], str]:
        """This template called from another one: it shares the caller's data frame and @root."""
        return self._compiled

    def variables(self) -> list[str]:
        """Every path the template reads, as written (``mentions``, ``@index``, ``../logouri``)."""
        seen: dict[str, None] = {}
        for path in self.paths:
            seen.setdefault(path.original, None)
        return list(seen)


def frozen_partials(partials: Mapping[str, Callable[[Any, dict[Any, Any]], str]]) -> PartialLoader:
    return partials.get
