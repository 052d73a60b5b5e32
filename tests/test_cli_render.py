"""`notify render`: a part of a shipped template from an event file, and `--check` over every template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT
from workers.cli import main

EVENT = ROOT / "examples" / "mention_email.json"


@pytest.mark.parametrize("language", ["handlebars", "mailchimp"])
def test_render_a_part_from_an_event_file(language: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["render", "mention-notification", "--data", str(EVENT), "--part", "text", "--language", language]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "Morning Business Report" in text and "25 Nov 2025, 09:20 UTC" in text


def test_the_same_data_renders_the_same_text_in_both_languages(capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for language in ("handlebars", "mailchimp"):
        main(
            ["render", "mention-notification", "--data", str(EVENT), "--part", "html", "--language", language]
        )
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]


def test_check_lists_variables_per_part(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--check"]) == 0
    out = capsys.readouterr().out
    assert "mention-notification-bulk" in out and "subject.hbs: " in out


def test_bad_data_and_unknown_templates_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["render", "mention-notification", "--data", str(bad)]) == 2
    assert "cannot read" in capsys.readouterr().err
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"mentions": []}))
    assert main(["render", "no-such-template", "--data", str(data)]) == 1
    assert "no-such-template" in capsys.readouterr().err


def test_notify_templates_dir_replaces_the_shipped_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    own = tmp_path / "own-templates" / "mention-notification"
    own.mkdir(parents=True)
    (own / "subject.hbs").write_text("Ours: {{tracking_unit_name}}")
    monkeypatch.setenv("NOTIFY_TEMPLATES_DIR", str(own.parent))
    assert main(["render", "mention-notification", "--data", str(EVENT), "--part", "subject"]) == 0
    assert capsys.readouterr().out.strip() == "Ours: Acme Brand Watch"
    # Only the folder given is read: the shipped bulk template is not there.
    assert main(["render", "mention-notification-bulk", "--data", str(EVENT)]) == 1
    assert "mention-notification-bulk" in capsys.readouterr().err
