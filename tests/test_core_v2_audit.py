"""Gaps found by an audit of issues 7 (Core v2) and 9 (Reliability), each with the test that failed before
its fix: `harness score` keeps what the run counted, scoring off the event loop, Ray resource requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import toy_task

from harness.cli import main
from harness.runner import RunConfig, RunSettings, run


def settings(tmp_path: Path, data: Path, **kw) -> RunSettings:
    kw.setdefault("db_url", None)
    return RunSettings(data=data, out_dir=tmp_path / "runs", show_progress=False, **kw)


@pytest.fixture
def toy_data(tmp_path):
    return toy_task.write_items(tmp_path / "toy", 40)


def test_harness_score_keeps_the_runs_cache_count_and_show_prints_it(tmp_path, toy_data, capsys):
    cfg = RunConfig("toy", solver="echo", n_boot=20)
    run(cfg, settings(tmp_path, toy_data))
    res = run(cfg, settings(tmp_path, toy_data))  # all 40 from the cache
    assert res.n_cached == 40
    assert main(["score", res.run_id, "--out", str(tmp_path / "runs")]) == 0
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert metrics["n_cached"] == 40 and metrics["n_samples"] == 40
    capsys.readouterr()
    assert main(["show", res.run_id, "--out", str(tmp_path / "runs")]) == 0
    assert "cached 40" in capsys.readouterr().out  # was "cached None" after a re-score
