"""The run loop: every sample once, errors recorded, resumable, outputs complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import toy_task  # noqa: F401  (registers the toy task)

from harness.cli import main
from harness.runner import RunConfig, RunSettings, run

TESTS = Path(__file__).parent


def settings(tmp_path: Path, data: Path, **kw) -> RunSettings:
    return RunSettings(data=data, out_dir=tmp_path / "runs", show_progress=False,
                       db_url=f"sqlite:///{tmp_path / 'board.sqlite'}", **kw)




def samples_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_run_writes_manifest_samples_metrics(tmp_path, toy_data):
    res = run(RunConfig("toy", solver="constant", solver_options=(("label", True),)), settings(tmp_path, toy_data))
    # 20 of 40 integers are even: constant True is right on exactly those.
    assert res.metrics["accuracy"].value == pytest.approx(0.5)
    man = json.loads((res.run_dir / "manifest.json").read_text())
    for key in ("config", "config_hash", "data_fingerprint", "packages", "git_commit", "seed", "started", "finished"):
        assert key in man
    assert man["status"] == "finished" and man["config"]["solver_options"] == {"label": True}
    rows = samples_of(res.run_dir)
    assert sorted(r["sample_id"] for r in rows) == sorted(f"s{i}" for i in range(40))
    assert all(r["scores"]["correct"] == float(r["prediction"] == r["target"]) for r in rows)
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert metrics["n_samples"] == 40 and metrics["n_errors"] == 0


def test_rerun_comes_from_cache_with_identical_numbers(tmp_path, toy_data):
    cfg = RunConfig("toy", solver="constant")
    first = run(cfg, settings(tmp_path, toy_data))
    second = run(cfg, settings(tmp_path, toy_data))
    assert first.n_cached == 0 and second.n_cached == 40
    assert second.metrics["accuracy"] == first.metrics["accuracy"]
    third = run(cfg, settings(tmp_path, toy_data, use_cache=False))
    assert third.n_cached == 0 and third.metrics["accuracy"] == first.metrics["accuracy"]


def test_changed_solver_options_miss_the_cache(tmp_path, toy_data):
    run(RunConfig("toy", solver="constant", solver_options=(("label", True),)), settings(tmp_path, toy_data))
    res = run(RunConfig("toy", solver="constant", solver_options=(("label", False),)), settings(tmp_path, toy_data))
    assert res.n_cached == 0


def test_failing_sample_is_recorded_not_fatal_and_retried(tmp_path, toy_data):
    fail_file = tmp_path / "fail.json"
    fail_file.write_text(json.dumps(["s3", "s7"]))
    cfg = RunConfig("toy", solver="flaky", solver_options=(("fail_file", str(fail_file)),))
    res = run(cfg, settings(tmp_path, toy_data))
    errored = {r.sample_id: r.error for r in res.records if not r.ok}
    assert set(errored) == {"s3", "s7"} and "boom on s3" in errored["s3"]
    assert res.metrics["accuracy"].n == 38 and res.metrics["accuracy"].value == 1.0
    assert json.loads((res.run_dir / "metrics.json").read_text())["n_errors"] == 2
    fail_file.write_text("[]")  # the endpoint recovered: only the two errored samples are recomputed
    again = run(cfg, settings(tmp_path, toy_data))
    assert again.n_cached == 38 and again.n_errors == 0 and len(again.records) == 40


def test_per_fold_metric_is_mean_over_folds(tmp_path, toy_data):
    res = run(RunConfig("toy", protocol="2fold", solver="constant"), settings(tmp_path, toy_data))
    # fold f1 tests even positions (all even x: acc 1.0), f2 odd positions (acc 0.0): mean 0.5
    assert res.metrics["accuracy"].value == pytest.approx(0.5)
    assert {r.fold for r in res.records} == {"f1", "f2"}


def test_limit_takes_first_n_of_each_fold(tmp_path, toy_data):
    res = run(RunConfig("toy", protocol="2fold", solver="echo", limit=3), settings(tmp_path, toy_data))
    assert [r.sample_id for r in res.records] == ["s0", "s2", "s4", "s1", "s3", "s5"]


def test_unknown_protocol_and_solver_are_clear_errors(tmp_path, toy_data, capsys):
    assert main(["run", "--task", "toy", "--protocol", "nope", "--data", str(toy_data), "--out", str(tmp_path)]) == 2
    assert "no protocol 'nope'" in capsys.readouterr().err
    assert main(["run", "--task", "toy", "--solver", "nope", "--data", str(toy_data), "--out", str(tmp_path)]) == 2
    assert "no solver 'nope'" in capsys.readouterr().err
    assert main(["run", "--task", "nope", "--out", str(tmp_path)]) == 2


KILL_SCRIPT = """
import sys; sys.path.insert(0, {tests!r})
import toy_task
from harness.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def _cli(tmp_path, data, *extra):
    script = KILL_SCRIPT.format(tests=str(TESTS))
    return [sys.executable, "-c", script, "run", "--task", "toy", "--data", str(data), "--out",
            str(tmp_path / "runs"), "--no-progress", *extra]


def test_kill_9_midway_then_rerun_equals_uninterrupted(tmp_path):
    data = toy_task.write_items(tmp_path / "toy", 60)
    args = _cli(tmp_path, data, "--solver", "slow", "-S", "delay=0.05", "--concurrency", "2")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cache = tmp_path / "runs" / "cache.sqlite"
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline and done < 10:
        time.sleep(0.2)
        if cache.exists():
            import sqlite3

            with sqlite3.connect(cache) as db:
                try:
                    done = db.execute("select count(*) from predictions").fetchone()[0]
                except sqlite3.OperationalError:
                    done = 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 10 <= done < 60, "the run should have been killed midway"
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "from cache: " in resumed.stdout
    run_dirs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    finished = [p for p in run_dirs if json.loads((p / "manifest.json").read_text())["status"] == "finished"]
    assert len(finished) == 1
    rows = samples_of(finished[0])
    ids = [r["sample_id"] for r in rows]
    assert len(ids) == 60 and len(set(ids)) == 60  # every sample exactly once
    metrics = json.loads((finished[0] / "metrics.json").read_text())
    assert metrics["n_cached"] >= done and metrics["metrics"]["accuracy"]["value"] == 1.0
    fresh = run(RunConfig("toy", solver="slow", solver_options=(("delay", 0.05),)),
                settings(tmp_path / "fresh", data, concurrency=8))
    assert fresh.metrics["accuracy"].value == metrics["metrics"]["accuracy"]["value"]


def test_cache_from_another_version_is_rebuilt_not_fatal(tmp_path, toy_data):
    import sqlite3

    out = tmp_path / "runs"
    out.mkdir()
    with sqlite3.connect(out / "cache.sqlite") as db:  # an old layout without the `record` column
        db.execute("CREATE TABLE results (task TEXT, sample_id TEXT, prediction TEXT)")
    res = run(RunConfig("toy", solver="echo"), settings(tmp_path, toy_data))
    assert res.n_errors == 0 and res.metrics["accuracy"].value == 1.0
    assert run(RunConfig("toy", solver="echo"), settings(tmp_path, toy_data)).n_cached == 40


def test_unserialisable_output_is_that_samples_error_and_numpy_values_become_json(tmp_path, toy_data):
    res = run(RunConfig("toy", solver="unserialisable"), settings(tmp_path, toy_data))
    bad = [r for r in res.records if not r.ok]
    assert len(bad) == 20 and all("not JSON-serialisable" in r.error for r in bad)
    good = [r for r in res.records if r.ok]
    assert all(r.prediction is True and type(r.prediction) is bool for r in good)
    again = run(RunConfig("toy", solver="unserialisable"), settings(tmp_path, toy_data))
    assert again.n_cached == 20 and again.metrics["accuracy"].value == res.metrics["accuracy"].value == 1.0


def test_progress_bar_renders_counts_in_a_terminal(tmp_path, toy_data):
    import io

    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200)
    fail_file = tmp_path / "fail.json"
    fail_file.write_text(json.dumps(["s1"]))
    cfg = RunConfig("toy", solver="flaky", solver_options=(("fail_file", str(fail_file)),))
    res = run(cfg, RunSettings(data=toy_data, out_dir=tmp_path / "runs", show_progress=True, db_url=None),
              console=console)
    shown = buf.getvalue()
    assert res.n_errors == 1
    assert "40/40" in shown and "errors 1" in shown and "cached 0" in shown
