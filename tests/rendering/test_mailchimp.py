"""Mailchimp merge tags: values, functions, conditionals, escaping and errors."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from workers.errors import TemplateSyntaxError
from workers.rendering import render


def mc(source: str, data: Mapping[str, object], escape: bool = True) -> str:
    return render(source, data, "mailchimp", escape=escape)


def test_names_are_case_insensitive_and_missing_prints_nothing() -> None:
    assert mc("Hi *|FNAME|* *|fname|* *|Fname|*[*|NOPE|*]", {"fname": "Ada"}) == "Hi Ada Ada Ada[]"


def test_values_print_like_handlebars() -> None:
    assert mc("*|N|* *|F|* *|B|* *|L|*", {"n": 3, "f": 2.0, "b": True, "l": [1, 2]}) == "3 2 true 1,2"


def test_functions() -> None:
    data = {"name": "ada LOVELACE", "link": "a b&c", "html": "<b>x</b>"}
    assert (
        mc("*|UPPER:NAME|*|*|LOWER:NAME|*|*|TITLE:NAME|*", data) == "ADA LOVELACE|ada lovelace|Ada Lovelace"
    )
    assert mc("*|URL:LINK|*", data, escape=False) == "a+b%26c"
    assert mc("*|HTML:HTML|* *|HTML|*", data) == "<b>x</b> &lt;b&gt;x&lt;/b&gt;"


def test_conditionals_nest_and_chain() -> None:
    source = "*|IF:PLAN=gold|*G*|IF:VIP|*+vip*|END:IF|**|ELSEIF:PLAN!=free|*paid*|ELSE:|*free*|END:IF|*"
    assert mc(source, {"plan": "gold", "vip": 1}) == "G+vip"
    assert mc(source, {"plan": "gold"}) == "G"
    assert mc(source, {"plan": "silver"}) == "paid"
    assert mc(source, {"plan": "free"}) == "free"


def test_ifnot_truthiness_and_numeric_comparisons() -> None:
    source = "*|IFNOT:NAME|*anonymous*|ELSE:|*named*|END:IF|*"
    assert mc(source, {}) == "anonymous"
    assert mc(source, {"name": ""}) == "anonymous"
    assert mc(source, {"name": []}) == "anonymous"
    assert mc(source, {"name": 0}) == "named"
    assert mc("*|IF:N=3|*three*|END:IF|*", {"n": 3.0}) == "three"
    assert mc("*|IF:N>10|*big*|ELSE:|*small*|END:IF|*", {"n": "9"}) == "small"
    assert mc('*|IF:CITY="New York"|*NY*|END:IF|*', {"city": "New York"}) == "NY"


def test_text_that_is_not_a_tag_stays() -> None:
    assert mc("*|not a tag|* *| |* a*|b", {}) == "*|not a tag|* *| |* a*|b"


@pytest.mark.parametrize(
    ("source", "line", "column", "fragment"),
    [
        ("a\n*|IF:X|*open", 2, 1, "*|END:IF|*"),
        ("*|END:IF|*", 1, 1, "without an open"),
        ("x *|IF:X|**|ELSE:|**|ELSEIF:Y|**|END:IF|*", 1, 20, "expected '*|END:IF|*'"),
        ("*|IF:|*x*|END:IF|*", 1, 1, "merge tag name"),
    ],
)
def test_syntax_errors(source: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        mc(source, {})
    assert (caught.value.line, caught.value.column) == (line, column)
    assert fragment in str(caught.value)


def test_date_tag_prints_today_in_utc() -> None:
    before = datetime.now(UTC).strftime("%Y-%m-%d")
    printed = mc("*|DATE:Y-m-d|*", {})
    after = datetime.now(UTC).strftime("%Y-%m-%d")
    assert printed in (before, after)
