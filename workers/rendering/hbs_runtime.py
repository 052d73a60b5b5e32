"""What compiled Handlebars code needs while it runs: data frames, block invocation, partial lookup.

Compiled code passes four values around: the context, the data frame (a dict, as in handlebars.js,
holding ``root``, ``index`` and friends plus our per-render environment under a key no template
path can spell), the block-parameter stack and the context stack used by ``../``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.errors import TemplateError
from workers.rendering.values import loosely_equal

# A key that is not a string, so no template path (``@foo``, ``@[foo]``) can ever reach it.
ENV_KEY: Any = object()

# Partials calling partials (directly or not) deeper than this fail with TemplateError.
MAX_PARTIAL_DEPTH = 64

# (context, data frame, block-param stack, context stack) -> rendered text
Emitter = Callable[[Any, dict[Any, Any], Any, Any], str]
Evaluator = Callable[[Any, dict[Any, Any], Any, Any], Any]
BlockFn = Callable[..., str]


def _noop(*_args: Any, **_kwargs: Any) -> str:
    return ""


NOOP: BlockFn = _noop


def create_frame(data: dict[Any, Any]) -> dict[Any, Any]:
    """handlebars.js ``createFrame``: a copy of the parent frame that remembers its parent."""
    frame = dict(data)
    frame["_parent"] = data
    return frame


def bind(program: Emitter, data: dict[Any, Any], bp: Any, dp: Any) -> BlockFn:
    """The ``options.fn`` a helper receives: render ``program`` for a context it chooses."""

    def run(
        context: Any, new_data: dict[Any, Any] | None = None, block_params: list[Any] | None = None
    ) -> str:
        depths = dp
        if dp is not None and not (context is dp[0] or loosely_equal(context, dp[0])):
            depths = (context, *dp)
        if new_data is None:
            new_data = data
        elif ENV_KEY not in new_data:
            # A helper may hand over a brand-new data object; the render's environment stays.
            new_data = {**new_data, ENV_KEY: data[ENV_KEY]}
        return program(context, new_data, (block_params, bp), depths)

    return run


@dataclass(slots=True)
class Options:
    """The ``options`` argument of a helper call."""

    name: str
    fn: BlockFn
    inverse: BlockFn
    data: dict[Any, Any]
    hash: dict[str, Any]


Helper = Callable[[Any, list[Any], dict[str, Any], Options], Any]


@dataclass(slots=True)
class Env:
    """Per-render state: the partials in scope and how deep partial calls are nested."""

    partials: dict[str, Any]
    load_partial: Callable[[str], Any]
    depth: int = 0
    cache: dict[str, Any] = field(default_factory=dict)

    def find(self, name: str) -> Any:
        found = self.partials.get(name)
        if found is not None:
            return found
        if name in self.cache:
            return self.cache[name]
        loaded = self.load_partial(name)
        self.cache[name] = loaded
        return loaded


def invoke_partial(
    env: Env,
    name: str,
    partial: Any,
    context: Any,
    data: dict[Any, Any],
    block: BlockFn | None,
    block_inlines: Mapping[str, Any] | None,
) -> str:
    """handlebars.js ``invokePartial``: run a partial (or the block's fallback) for ``context``."""
    current_block = data.get("partial-block")
    saved_partials = env.partials
    if block is not None:
        data = create_frame(data)

        def partial_block(inner_context: Any, inner_data: dict[Any, Any] | None = None) -> str:
            # The block's own body sees the partial-block of the place it was written in.
            frame = create_frame(inner_data if inner_data is not None else data)
            frame["partial-block"] = current_block
            return block(inner_context, frame)

        data["partial-block"] = partial_block
        if partial is None:
            partial = partial_block
        if block_inlines:
            env.partials = {**env.partials, **block_inlines}
    if partial is None:
        raise TemplateError(f"The partial {name} could not be found")
    env.depth += 1
    try:
        if env.depth > MAX_PARTIAL_DEPTH:
            raise TemplateError(f"partials nest deeper than {MAX_PARTIAL_DEPTH} levels (at {name})")
        return str(partial(context, data))
    finally:
        env.depth -= 1
        env.partials = saved_partials
