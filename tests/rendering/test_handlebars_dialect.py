"""Our Handlebars engine beyond handlebars.js: Mandrill's helpers and conditions, errors, escaping modes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from workers.errors import TemplateError, TemplateSyntaxError
from workers.rendering import render
from workers.rendering.engines import compile_source


def test_mandrill_inline_helpers() -> None:
    data = {"name": "aDa lovelace", "link": "a b&c/d~e", "html": "<p>Hi <b>there</b></p>"}
    assert (
        render("{{upper name}}|{{lower name}}|{{title name}}", data)
        == "ADA LOVELACE|ada lovelace|Ada Lovelace"
    )
    assert render("{{url link}}", data, escape=False) == "a+b%26c%2Fd%7Ee"
    assert render("{{striptags html}}", data) == "Hi there"
    assert render("{{unsub 'https://x.example/u?a=1'}}", {}) == "https://x.example/u?a&#x3D;1"


def test_helper_output_is_escaped_and_missing_argument_prints_nothing() -> None:
    assert render("{{upper v}}", {"v": "<i>"}) == "&lt;I&gt;"
    assert render("[{{upper}}][{{upper missing}}]", {}) == "[][]"


def test_date_helper_formats_given_seconds_and_defaults_to_today() -> None:
    assert render("{{date 'Y-m-d H:i:s D jS F' 1764062400}}", {}) == "2025-11-25 09:20:00 Tue 25th November"
    assert render("{{date 'd/m/Y' when}}", {"when": "1764062400"}) == "25/11/2025"
    before = datetime.now(UTC).strftime("%d/%m/%Y")
    today = render("{{date}}", {})
    after = datetime.now(UTC).strftime("%d/%m/%Y")
    assert today in (before, after)
    assert re.fullmatch(r"\d\d/\d\d/\d{4}", today)


def test_helpers_shadow_fields_as_in_mandrill() -> None:
    assert render("[{{title}}][{{url}}]", {"title": "T", "url": "U"}) == "[][]"
    assert render("{{this.title}} {{./url}}", {"title": "T", "url": "U"}) == "T U"


@pytest.mark.parametrize(
    ("condition", "data", "expected"),
    [
        ("purchases > 3", {"purchases": 4}, "yes"),
        ("purchases > 3", {"purchases": "10"}, "yes"),
        ("purchases > 3", {"purchases": 3}, "no"),
        ("purchases > 3", {}, "no"),
        ('os == "Windows"', {"os": "Windows"}, "yes"),
        ("os != 'Windows'", {"os": "Windows"}, "no"),
        ("a >= 2 && b <= 1", {"a": 2, "b": 1}, "yes"),
        ("a == 1 || !b", {"a": 2, "b": ""}, "yes"),
        ("!(a == 1)", {"a": 1}, "no"),
        ("flag == true", {"flag": True}, "yes"),
        ("n == 2", {"n": 2.0}, "yes"),
        ("user.age < 18", {"user": {"age": 17}}, "yes"),
        ("count", {"count": 0}, "no"),
        ("name == null", {}, "yes"),
        ("name == null", {"name": "x"}, "no"),
    ],
)
def test_backtick_conditions(condition: str, data: dict[str, object], expected: str) -> None:
    assert render("{{#if `" + condition + "`}}yes{{else}}no{{/if}}", data) == expected


def test_elseif_chain_with_backticks() -> None:
    source = (
        '{{#if `os == "OS/2 Warp"`}}warp{{elseif `os == "Windows"`}}win'
        "{{elseif linux}}linux{{else}}other{{/if}}"
    )
    assert render(source, {"os": "Windows"}) == "win"
    assert render(source, {"os": "Mac", "linux": True}) == "linux"
    assert render(source, {"os": "Mac"}) == "other"


def test_backtick_conditions_see_scopes() -> None:
    source = "{{#each items}}{{#if `@index == ../pick`}}{{this}}{{/if}}{{/each}}"
    assert render(source, {"items": ["a", "b", "c"], "pick": 1}) == "b"


def test_bad_condition_is_a_syntax_error_with_position() -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        render("line one\n{{#if `a >`}}x{{/if}}", {})
    assert caught.value.line == 2
    assert "expected a value" in str(caught.value)


@pytest.mark.parametrize(
    ("source", "line", "column", "fragment"),
    [
        ("Hello {{name}", 1, 13, "expected"),
        ("a\nb {{#if x}}\nopen", 3, 5, "'{{/if}}'"),
        ("{{#if x}}\n{{/each}}", 1, 1, "if doesn't match each"),
        ("{{foo.this}}", 1, 3, "Invalid path"),
        ("x\n  {{!-- never closed", 2, 3, "'--}}'"),
        ("{{> p a b}}", 1, 1, "partial arguments"),
    ],
)
def test_syntax_errors_name_line_column_and_expectation(
    source: str, line: int, column: int, fragment: str
) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_source(source, "handlebars", True, "greeting/html.hbs")
    error = caught.value
    assert (error.template, error.line, error.column) == ("greeting/html.hbs", line, column)
    assert fragment in str(error)
    assert str(error).startswith(f"greeting/html.hbs:{line}:{column}: ")


def test_render_time_errors_carry_the_position() -> None:
    with pytest.raises(TemplateError) as caught:
        render("ok\n  {{nothere 1}}", {})
    assert (caught.value.line, caught.value.column) == (2, 3)
    assert "Missing helper" in str(caught.value)
    with pytest.raises(TemplateError, match="could not be found"):
        render("{{> nope}}", {})


def test_text_mode_does_not_escape() -> None:
    data = {"v": "Tom & Jerry <3"}
    assert render("{{v}}", data) == "Tom &amp; Jerry &lt;3"
    assert render("{{v}}", data, escape=False) == "Tom & Jerry <3"


def test_partials_through_the_api() -> None:
    partials = {"card": "<{{name}}>{{> @partial-block}}", "empty": ""}
    assert render("{{#> card}}!{{/card}}{{> empty}}", {"name": "<n>"}, partials=partials) == "<&lt;n&gt;>!"


def test_compiled_templates_are_cached_by_source_and_language() -> None:
    first = compile_source("{{a}}-cache", "handlebars")
    assert compile_source("{{a}}-cache", "handlebars") is first
    assert compile_source("{{a}}-cache", "mailchimp") is not first


def test_unknown_language_is_refused() -> None:
    with pytest.raises(TemplateError, match="unknown merge language"):
        render("x", {}, "jinja")


# Issue 13.8: every example in Mandrill's table of inline helpers, exactly as documented there:
# https://mailchimp.com/developer/transactional/docs/templates-dynamic-content/ ("Mailchimp
# Transactional supports the following inline helpers") and its older copy,
# https://mandrill.zendesk.com/hc/en-us/articles/205582537-Using-Handlebars-for-dynamic-content.
# upper, lower and title were read from those pages; the url example's result is PHP urlencode of
# the documented input (the stored page copy cut off before it), written from knowledge.
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{upper "your text"}}', "YOUR TEXT"),
        ('{{lower "Your Text"}}', "your text"),
        ('{{lower "your text"}}', "your text"),
        ('{{title "your text is neat"}}', "Your Text is Neat"),
        ('{{url "http://yourawesomeurl.com"}}', "http%3A%2F%2Fyourawesomeurl.com"),
    ],
)
def test_mandrill_documented_helper_examples(template: str, expected: str) -> None:
    assert render(template, {}, escape=False) == expected


def test_title_keeps_short_words_lower_case_except_first() -> None:
    assert render('{{title "the state of the art is in a box"}}', {}) == "The State of the Art is in a Box"
