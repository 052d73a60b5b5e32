"""The benchmark scripts finish in quick mode and print the figures they promise; no timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, require_service

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq, pytest.mark.postgres]


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("script", ["throughput.py", "latency.py", "io_bound.py", "scale.py"])
def test_every_script_explains_itself(script: str) -> None:
    assert "usage:" in run(script, "--help")


def test_throughput_prints_both_ceilings_the_worker_and_the_ratios() -> None:
    require_service("redis")
    out = run("throughput.py", "--quick", "--broker", "both")
    for broker in ("rabbitmq", "redis"):
        assert f"[{broker} run 1] no-op threads -c 32" in out
        assert f"[{broker} run 1] same-shape threads -c 32" in out
        for destination in ("outbox", "http"):
            assert f"[{broker} run 1] notify {destination} threads -c 32" in out
            assert f"[{broker} run 1] {destination}: ratio" in out
    assert "of the same-shape ceiling (target 40%)" in out and "(target 30%)" in out
    # Every event of the quick run reached the ledger as sent, on both brokers and destinations.
    assert out.count("'sent': 200") == 4
    assert out.count("peak RSS") >= 8
    assert out.count("load ") >= 8  # every figure beside the load it ran under


def test_latency_prints_percentiles_and_memory() -> None:
    out = run("latency.py", "--quick")
    assert "latency ms: p50" in out and "p95" in out and "p99" in out
    assert "peak RSS" in out


def test_memory_prints_rss_after_each_step() -> None:
    out = run("memory.py", "--quick", "--outbox")
    assert "after    100: RSS" in out and "after    200: RSS" in out
    assert "ms/notification" in out


def test_io_bound_prints_each_configuration_and_a_recommendation() -> None:
    out = run("io_bound.py", "--quick")
    assert "threads  -c 8" in out and "threads  -c 50" in out
    assert "recommended:" in out
    assert "peak RSS" in out
