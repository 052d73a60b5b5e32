"""Python versions of the JavaScript helpers in the handlebars.js spec data, for conformance runs.

The spec cases define helpers as JavaScript source. Our engine takes helpers as Python callables
(internally; custom helpers are not part of the public API), so each JavaScript helper the suite
uses is translated here by hand, keyed by its whitespace-normalised source. Helpers that inspect
handlebars.js internals (``options.fn.run``, ``options.types``) have no translation; cases using
them stay skipped with that reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from workers.rendering.hbs_runtime import Helper, Options, create_frame
from workers.rendering.values import SafeString, escape_html, js_falsy, js_string


def normalise(source: str) -> str:
    return re.sub(r"\s+", " ", source).strip()


def js_text(value: Any) -> str:
    """JavaScript ``String(value)`` inside a concatenation: missing values read ``undefined``."""
    return "undefined" if value is None else js_string(value)


def js_plus(left: Any, right: Any) -> Any:
    numeric = (int, float)
    if all(isinstance(side, numeric) and not isinstance(side, bool) for side in (left, right)):
        return left + right
    return js_text(left) + js_text(right)


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _let(ctx: Any, args: list[Any], hash_: dict[str, Any], o: Options) -> Any:
    frame = create_frame(o.data)
    frame.update(hash_)
    return o.fn(ctx, frame)


def _depth(ctx: Any, args: list[Any], hash_: dict[str, Any], o: Options) -> Any:
    frame = create_frame(o.data)
    frame["depth"] = (o.data.get("depth") or 0) + 1
    return o.fn(ctx, frame)


def _myif(ctx: Any, args: list[Any], hash_: dict[str, Any], o: Options) -> Any:
    return o.inverse(ctx) if js_falsy(args[0]) else o.fn(ctx)


def _input(ctx: Any, args: list[Any], hash_: dict[str, Any], o: Options) -> Any:
    label = escape_html(js_string(hash_.get("aria-label")))
    placeholder = escape_html(js_string(hash_.get("placeholder")))
    return SafeString(f'<input aria-label="{label}" placeholder="{placeholder}" />')


def _world_thing(ctx: Any, args: list[Any], hash_: dict[str, Any], o: Options) -> Any:
    exclaim = _get(ctx, "exclaim")
    return (
        js_text(o.data.get("adjective"))
        + " "
        + js_text(args[0])
        + (js_text(exclaim) if not js_falsy(exclaim) else "")
    )


def _hello_noun_exclaim(ctx: Any, args: list[Any], hash_: dict[str, Any], o: Options) -> Any:
    suffix = "!" if not js_falsy(_get(ctx, "exclaim")) else ""
    return js_text(o.data.get("adjective")) + " " + js_text(args[0]) + suffix


def _world(ctx: Any, args: list[Any], hash_: dict[str, Any], o: Options) -> Any:
    suffix = "!" if not js_falsy(_get(ctx, "exclaim")) else ""
    return js_text(o.data.get("adjective")) + " world" + suffix


def _v(args: list[Any], index: int = 0) -> Any:
    return args[index] if len(args) > index else None


def _same(args: list[Any]) -> bool:
    return bool(args[0] == args[1] and type(args[0]) is type(args[1]))


# (JavaScript source as in the spec data, Python translation)
_PAIRS: list[tuple[str, Helper]] = [
    ("function (value) { return 'bar ' + value; }", lambda c, a, h, o: "bar " + js_text(_v(a))),
    ("function (arg) { return arg; }", lambda c, a, h, o: _v(a)),
    (
        "function(options) { return options.data && options.data.exclaim; }",
        lambda c, a, h, o: o.data.get("exclaim"),
    ),
    (
        "function (options) { return options.data.adjective + ' ' + this.noun; }",
        lambda c, a, h, o: js_text(o.data.get("adjective")) + " " + js_text(_get(c, "noun")),
    ),
    (
        "function (options) { var frame = Handlebars.createFrame(options.data); for (var prop in "
        "options.hash) { if (prop in options.hash) { frame[prop] = options.hash[prop]; } } "
        "return options.fn(this, {data: frame}); }",
        _let,
    ),
    ("function (noun) { return 'Hello ' + noun; }", lambda c, a, h, o: "Hello " + js_text(_v(a))),
    (
        "function (options) { return 'Hello ' + options.hash.noun; }",
        lambda c, a, h, o: "Hello " + js_text(h.get("noun")),
    ),
    (
        "function (noun, options) { return options.data.adjective + ' ' + noun + "
        "(this.exclaim ? '!' : ''); }",
        _hello_noun_exclaim,
    ),
    ("function (options) { return options.fn(this); }", lambda c, a, h, o: o.fn(c)),
    (
        "function (options) { return options.data.adjective + ' world' + (this.exclaim ? '!' : ''); }",
        _world,
    ),
    ("function (options) { return options.fn({exclaim: '?'}); }", lambda c, a, h, o: o.fn({"exclaim": "?"})),
    (
        "function (thing, options) { return options.data.adjective + ' ' + thing + (this.exclaim || ''); }",
        _world_thing,
    ),
    (
        "function (options) { return options.data.accessData + ' ' + options.fn({exclaim: '?'}); }",
        lambda c, a, h, o: js_text(o.data.get("accessData")) + " " + o.fn({"exclaim": "?"}),
    ),
    (
        "function (options) { return options.fn({exclaim: '?', zomg: 'world'}, "
        "{ data: {adjective: 'sad'} }); }",
        lambda c, a, h, o: o.fn({"exclaim": "?", "zomg": "world"}, {"adjective": "sad"}),
    ),
    (
        "function (options) { return options.fn({exclaim: '?'}, { data: {adjective: 'sad'} }); }",
        lambda c, a, h, o: o.fn({"exclaim": "?"}, {"adjective": "sad"}),
    ),
    (
        "function (options) { var frame = Handlebars.createFrame(options.data); "
        "frame.depth = options.data.depth + 1; return options.fn(this, {data: frame}); }",
        _depth,
    ),
    ("function () { return 'dude'; }", lambda c, a, h, o: "dude"),
    ("function () { return 'missing'; }", lambda c, a, h, o: "missing"),
    ("function (block) { return block.fn(''); }", lambda c, a, h, o: o.fn("")),
    ("function (block) { return block.inverse(''); }", lambda c, a, h, o: o.inverse("")),
    ("function (value) { return value + ''; }", lambda c, a, h, o: js_text(_v(a))),
    (
        "function (options) { return new Handlebars.SafeString(options.fn()); }",
        lambda c, a, h, o: SafeString(o.fn(None)),
    ),
    (
        "function(conditional, options) { if (conditional) { return options.fn(this); } "
        "else { return options.inverse(this); } }",
        _myif,
    ),
    ("function(options) { return options.hash.length; }", lambda c, a, h, o: h.get("length")),
    ("function (val) { return val + val; }", lambda c, a, h, o: js_plus(_v(a), _v(a))),
    ("function () { return 'LOL'; }", lambda c, a, h, o: "LOL"),
    ("function (val) { return 'val is ' + val; }", lambda c, a, h, o: "val is " + js_text(_v(a))),
    ("function (x, y) { return x === y; }", lambda c, a, h, o: _same(a)),
    (
        "function (val, that, theOther) { return 'val is ' + val + ', ' + that + ' and ' + theOther; }",
        lambda c, a, h, o: f"val is {js_text(_v(a))}, {js_text(_v(a, 1))} and {js_text(_v(a, 2))}",
    ),
    ("function (a, b) { return a + '-' + b; }", lambda c, a, h, o: js_text(_v(a)) + "-" + js_text(_v(a, 1))),
    ("function (a, b) { return a + b; }", lambda c, a, h, o: js_plus(_v(a), _v(a, 1))),
    (
        "function(x, y, options) { if (!options || options === global.lastOptions) { throw new "
        "Error('options hash was reused'); } global.lastOptions = options; return x === y; }",
        lambda c, a, h, o: _same(a),
    ),
    (
        'function (options) { return "val is " + options.hash.fun; }',
        lambda c, a, h, o: "val is " + js_text(h.get("fun")),
    ),
    (
        "function (options) { var hash = options.hash; var ariaLabel = "
        "Handlebars.Utils.escapeExpression(hash['aria-label']); var placeholder = "
        "Handlebars.Utils.escapeExpression(hash.placeholder); return new Handlebars.SafeString("
        "'<input aria-label=\"' + ariaLabel + '\" placeholder=\"' + placeholder + '\" />'); }",
        _input,
    ),
    (
        "function (defaultString) { return new Handlebars.SafeString(defaultString); }",
        lambda c, a, h, o: SafeString(js_text(_v(a))),
    ),
    ("function () { return 'BORK'; }", lambda c, a, h, o: "BORK"),
]
TRANSLATIONS: dict[str, Helper] = dict(_PAIRS)


def translate(helpers: dict[str, Any], names: set[str]) -> dict[str, Helper] | None:
    """Python versions of the helpers in ``names``, or None when one has no translation."""
    found: dict[str, Helper] = {}
    for name, spec in helpers.items():
        if name not in names:
            continue
        source = normalise(str(spec.get("javascript", ""))) if isinstance(spec, dict) else ""
        helper: Callable[..., Any] | None = TRANSLATIONS.get(source)
        if helper is None:
            return None
        found[name] = helper
    return found
