"""Hostile values render inert; huge values, long lists and deep nesting render or fail cleanly.

Bounds (documented in templates/README.md): blocks nest at most 120 deep in one template, merge-tag
conditionals 100, partial calls 64; values and lists have no limit of their own.
"""

from __future__ import annotations

import pytest

from workers.errors import TemplateError, TemplateSyntaxError
from workers.rendering import render
from workers.rendering.hbs_parser import MAX_NESTING
from workers.rendering.hbs_runtime import MAX_PARTIAL_DEPTH
from workers.rendering.mailchimp import MAX_NESTING as MC_NESTING

HOSTILE = {
    "script": "<script>alert(1)</script>",
    "attr": '" onmouseover="alert(1)" x=\'',
    "backtick": "` onerror=`alert(1)",
    "mustache": "{{script}} {{{script}}} {{> evil}} {{#each x}}",
    "merge": "*|SCRIPT|* *|HTML:SCRIPT|* *|IF:SCRIPT|*",
}


def test_handlebars_html_escapes_every_breakout() -> None:
    source = "<a title=\"{{attr}}\" data-x='{{backtick}}'>{{script}}</a>{{mustache}}{{merge}}"
    out = render(source, HOSTILE)
    assert "<script>" not in out
    assert '" onmouseover' not in out
    assert "data-x='&#x60; onerror" in out
    assert "&lt;script&gt;" in out
    assert "&quot; onmouseover&#x3D;&quot;alert(1)&quot; x&#x3D;&#x27;" in out
    assert "&#x60; onerror&#x3D;&#x60;alert(1)" in out
    # Template syntax inside values is printed, never run.
    assert "{{script}} {{{script}}} {{&gt; evil}} {{#each x}}" in out
    assert "*|SCRIPT|* *|HTML:SCRIPT|* *|IF:SCRIPT|*" in out


def test_mailchimp_html_escapes_and_never_rescans_values() -> None:
    source = '<a title="*|ATTR|*">*|SCRIPT|*</a>*|MUSTACHE|**|MERGE|*'
    out = render(source, HOSTILE, "mailchimp")
    assert "<script>" not in out and '" onmouseover' not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "*|SCRIPT|* *|HTML:SCRIPT|* *|IF:SCRIPT|*" in out
    assert "{{script}} {{{script}}}" in out


def test_text_parts_print_values_verbatim_but_still_inert() -> None:
    assert render("{{merge}}{{mustache}}", HOSTILE, escape=False) == HOSTILE["merge"] + HOSTILE["mustache"]
    assert render("*|MERGE|*", HOSTILE, "mailchimp", escape=False) == HOSTILE["merge"]


def test_megabyte_value_renders_whole() -> None:
    big = "<&>" * 350_000
    out = render("[{{v}}]", {"v": big})
    assert len(out) == 2 + 350_000 * len("&lt;&amp;&gt;")
    assert render("[*|V|*]", {"v": big}, "mailchimp", escape=False) == f"[{big}]"


def test_ten_thousand_items() -> None:
    items = [{"n": i} for i in range(10_000)]
    out = render("{{#each items}}{{n}}{{#unless @last}},{{/unless}}{{/each}}", {"items": items})
    assert out == ",".join(str(i) for i in range(10_000))


def test_hundred_deep_template_nesting_renders() -> None:
    depth = 100
    source = "{{#with a}}" * depth + "{{v}}" + "{{/with}}" * depth
    data: dict[str, object] = {"v": "bottom"}
    for _ in range(depth):
        data = {"a": data}
    assert render(source, data) == "bottom"
    chain = "{{#if t}}" * depth + "x" + "{{/if}}" * depth
    assert render(chain, {"t": True}) == "x"


def test_nesting_beyond_the_bound_is_a_syntax_error() -> None:
    depth = MAX_NESTING + 1
    with pytest.raises(TemplateSyntaxError, match="nest deeper"):
        render("{{#if t}}" * depth + "{{/if}}" * depth, {"t": True})
    with pytest.raises(TemplateSyntaxError, match="nest deeper"):
        render("*|IF:A|*" * (MC_NESTING + 1) + "*|END:IF|*" * (MC_NESTING + 1), {}, "mailchimp")


def test_hundred_deep_data_through_a_recursive_partial_fails_cleanly() -> None:
    partials = {"node": "{{name}}{{#if child}}>{{> node child}}{{/if}}"}
    shallow: dict[str, object] = {"name": "leaf"}
    for i in range(MAX_PARTIAL_DEPTH - 2):
        shallow = {"name": str(i), "child": shallow}
    assert render("{{> node}}", shallow, partials=partials).endswith(">leaf")
    deep: dict[str, object] = {"name": "leaf"}
    for i in range(100):
        deep = {"name": str(i), "child": deep}
    with pytest.raises(TemplateError, match="partials nest deeper than 64"):
        render("{{> node}}", deep, partials=partials)


def test_self_recursive_partial_stops() -> None:
    with pytest.raises(TemplateError, match="partials nest deeper"):
        render("{{> loop}}", {}, partials={"loop": "x{{> loop}}"})
