"""Conformance cases: vendored spec data and our corpus, paired with handlebars.js's own outputs.

Expected outputs come from ``tests/rendering/oracle/*.json``, written by
``tools/render-oracle/oracle.js`` running the pinned handlebars.js. Cases we deliberately do not
support are skipped with the reason returned by ``skip_reason``; see ``templates/README.md``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spec_helpers import translate

HERE = Path(__file__).parent
SPEC = HERE / "spec"
ORACLE = HERE / "oracle"

# compileOptions that change the language; we implement only handlebars.js's defaults.
_UNSUPPORTED_OPTIONS = {
    "compat": "compat mode (Mustache-style recursive context lookup) is not offered",
    "knownHelpersOnly": "knownHelpersOnly compile option is not offered",
    "strict": "strict mode is not offered",
    "assumeObjects": "assumeObjects is not offered",
    "data": "turning @data off is not offered",
    "preventIndent": "preventIndent is not offered",
    "explicitPartialContext": "explicitPartialContext is not offered",
    "ignoreStandalone": "ignoreStandalone is not offered",
    "stringParams": "stringParams (deprecated) is not offered",
    "trackIds": "trackIds (deprecated) is not offered",
    "knownHelpers": "knownHelpers declarations are irrelevant without custom helpers",
}


@dataclass(frozen=True)
class Case:
    group: str
    index: int
    label: str
    template: str
    data: Any
    partials: dict[str, str]
    helpers: dict[str, Any]
    data_vars: dict[str, Any]
    expected: str | None  # None when handlebars.js raised
    oracle_error: str | None
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.group}[{self.index}]"


def _has_code(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value.get("!code")) or any(_has_code(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_code(v) for v in value)
    return False


def used_helpers(case: dict[str, Any]) -> set[str]:
    partials = case.get("partials") or {}
    template = case.get("template", "") + "".join(v for v in partials.values() if isinstance(v, str))
    return {
        name
        for name in case.get("helpers") or {}
        if re.search(r"(?<![\w$-])" + re.escape(name) + r"(?![\w$-])", template)
    }


def skip_reason(case: dict[str, Any]) -> str | None:
    used = used_helpers(case)
    if used and translate(case.get("helpers") or {}, used) is None:
        return "a JavaScript helper that inspects handlebars.js internals (options.fn.run, options.types)"
    if case.get("decorators"):
        return "uses a custom decorator written in JavaScript"
    if _has_code(case.get("data")):
        return "data holds JavaScript functions (lambdas); template data here is JSON"
    if _has_code(case.get("partials")):
        return "a partial is a JavaScript function"
    for option, value in (case.get("compileOptions") or {}).items():
        if option in _UNSUPPORTED_OPTIONS and not (option == "data" and value is True):
            return _UNSUPPORTED_OPTIONS[option]
    for option, value in (case.get("runtimeOptions") or {}).items():
        if option != "data" or not isinstance(value, dict):
            return f"runtime option {option}={value!r} is not offered"
        if _has_code(value):
            return "@data holds JavaScript functions"
    return None


def _oracle(group: str) -> list[dict[str, Any]]:
    loaded = json.loads((ORACLE / f"{group}.json").read_text(encoding="utf-8"))
    return list(loaded["cases"])


def _build(group: str, raw: list[dict[str, Any]], label_of: Any) -> list[Case]:
    results = _oracle(group)
    assert len(results) == len(raw), f"{group}: oracle out of date, rerun tools/render-oracle/oracle.js"
    cases = []
    for index, (case, result) in enumerate(zip(raw, results, strict=True)):
        partials = case.get("partials") or {}
        cases.append(
            Case(
                group=group,
                index=index,
                label=label_of(case),
                template=case["template"],
                data=case.get("data"),
                partials=partials if not _has_code(partials) else {},
                data_vars=(case.get("runtimeOptions") or {}).get("data") or {},
                helpers=translate(case.get("helpers") or {}, used_helpers(case)) or {},
                expected=result.get("output"),
                oracle_error=result.get("error"),
                skip=skip_reason(case),
            )
        )
    return cases


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted((SPEC / "handlebars").glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        cases += _build(
            f"handlebars-{path.stem}", raw, lambda c: f"{c.get('description', '')} - {c.get('it', '')}"
        )
    for path in sorted((SPEC / "mustache").glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))["tests"]
        cases += _build(f"mustache-{path.stem}", raw, lambda c: str(c.get("name", "")))
    corpus = HERE / "corpus" / "handlebars.json"
    if corpus.exists():
        raw = json.loads(corpus.read_text(encoding="utf-8"))
        cases += _build("corpus-handlebars", raw, lambda c: str(c.get("name", "")))
    return cases


def run_case(case: Case) -> tuple[bool, str]:
    """(passed, what we produced); an expected handlebars.js error must be a TemplateError here."""
    from workers.errors import TemplateError
    from workers.rendering.handlebars import HandlebarsTemplate
    from workers.rendering.hbs_helpers import BUILTIN_HELPERS

    def compile_(source: str, name: str) -> HandlebarsTemplate:
        # Plain handlebars.js has no Mandrill helpers; with them, fields named `url` or `title`
        # would be shadowed (Mandrill's rule), which the spec data does not expect.
        return HandlebarsTemplate(source, name=name, helpers={**BUILTIN_HELPERS, **case.helpers})

    try:
        partials = {name: compile_(source, name).as_partial() for name, source in case.partials.items()}
        output = compile_(case.template, case.id).render(case.data, partials.get, data_vars=case.data_vars)
    except TemplateError as error:
        return case.expected is None, f"TemplateError: {error}"
    return output == case.expected, output


def main() -> None:
    groups: dict[str, list[int]] = {}
    for case in all_cases():
        groups.setdefault(case.group, [0, 0, 0])
        if case.skip:
            groups[case.group][2] += 1
            continue
        ok, _ = run_case(case)
        groups[case.group][0 if ok else 1] += 1
    totals = [0, 0, 0]
    print(f"{'group':34} {'pass':>9} {'rate':>7} {'skipped':>8}")
    for group, (passed, failed, skipped) in groups.items():
        run = passed + failed
        print(f"{group:34} {passed:>4}/{run:<4} {100 * passed / run if run else 100:>6.1f}% {skipped:>8}")
        totals = [totals[0] + passed, totals[1] + failed, totals[2] + skipped]
    run = totals[0] + totals[1]
    print(f"{'total':34} {totals[0]:>4}/{run:<4} {100 * totals[0] / run:>6.1f}% {totals[2]:>8}")


if __name__ == "__main__":
    main()
