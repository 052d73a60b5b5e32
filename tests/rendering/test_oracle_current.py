"""The committed oracle outputs are what the pinned handlebars.js produces today (needs node)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORACLE_TOOL = ROOT / "tools" / "render-oracle"
ORACLE_DATA = Path(__file__).parent / "oracle"


@pytest.mark.node
def test_regenerated_oracle_matches_committed(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (ORACLE_TOOL / "node_modules" / "handlebars").is_dir():
        pytest.skip("needs node and `npm ci` in tools/render-oracle")
    committed = {path.name: path.read_text(encoding="utf-8") for path in ORACLE_DATA.glob("*.json")}
    subprocess.run(
        [node, "oracle.js"],
        cwd=ORACLE_TOOL,
        check=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "ORACLE_OUT": str(tmp_path)},
    )
    regenerated = {path.name: path.read_text(encoding="utf-8") for path in tmp_path.glob("*.json")}
    assert regenerated == committed
    assert json.loads(committed["handlebars-basic.json"])["generator"] == "handlebars 4.7.8"
