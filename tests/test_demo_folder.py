"""`notify demo --dir`: only a folder the demo made is wiped; the user's own settings win over the demo's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers.cli import main
from workers.demo import MARKER, PickAnotherFolder, demo_environment, prepare


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every variable the demo defaults, absent now and restored after the test."""
    for key in demo_environment(Path("/unused")):
        monkeypatch.setenv(key, "")  # recorded first, so the delete below is undone too
        monkeypatch.delenv(key)
    return monkeypatch


def test_a_folder_the_demo_did_not_make_is_left_alone(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    keep = tmp_path / "mine" / "thesis.txt"
    keep.parent.mkdir()
    keep.write_text("three years of work")
    with pytest.raises(PickAnotherFolder, match="not a demo folder"):
        prepare(keep.parent)
    assert keep.read_text() == "three years of work"


def test_the_cli_says_so_in_one_line_with_exit_2(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine").mkdir()
    assert main(["demo", "--dir", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("notify: --dir: ") and "not a demo folder" in err[0]


def test_a_previous_demo_folder_is_emptied_and_the_users_settings_win(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "demo"
    prepare(base)
    (base / "notify.db").write_text("old run")
    clean_env.setenv("NOTIFY_SMS_PROVIDER", "twilio")
    prepare(base)
    assert sorted(p.name for p in base.iterdir()) == [MARKER]
    assert os.environ["NOTIFY_SMS_PROVIDER"] == "twilio"
    assert os.environ["NOTIFY_DATABASE_URL"] == f"sqlite:///{base / 'notify.db'}"
