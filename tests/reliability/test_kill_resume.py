"""kill -9 at a random point, then the same command again: the resumed run's metrics.json equals an
uninterrupted run's, and every sample is recorded exactly once (issue 9, the suite).

The run is a subprocess (`harness run` on the toy task, 2 folds, a solver that takes 40 ms per sample
at concurrency 4); hypothesis chooses when to kill it, as a fraction of an uninterrupted run's wall time
(from start-up to after the end); one more kill lands when 20 samples are in the cache, so that at
least one kill certainly lands while samples are being solved.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.toy_task import write_items

REPO = Path(__file__).resolve().parents[2]
N_ITEMS = 120
CODE = "import sys, tests.toy_task; from harness.cli import main; sys.exit(main(sys.argv[1:]))"


def command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", CODE, "run", "--task", "toy", "--protocol", "2fold", "--solver", "slow",
            "-S", "delay=0.04", "--concurrency", "4", "--data", str(data), "--out", str(out), "--no-progress",
            "--bootstrap", "200"]


def finished_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir() and (p / "metrics.json").exists()]
    return max(runs, key=lambda p: json.loads((p / "manifest.json").read_text())["finished"] or "")


def run_to_end(data: Path, out: Path) -> dict:
    proc = subprocess.run(command(data, out), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    run = finished_run(out)
    ids = [json.loads(line)["sample_id"] for line in (run / "samples.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(f"s{i}" for i in range(N_ITEMS))  # every sample exactly once
    return json.loads((run / "metrics.json").read_text())


def test_resume_after_kill_9_gives_the_uninterrupted_metrics(tmp_path_factory) -> None:
    data = write_items(tmp_path_factory.mktemp("data") / "toy", N_ITEMS)
    start = time.monotonic()
    reference = run_to_end(data, tmp_path_factory.mktemp("reference"))
    wall = time.monotonic() - start
    assert reference["n_cached"] == 0
    cached_after_kill: list[int] = []

    @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
    @given(fraction=st.floats(min_value=0.05, max_value=1.1))
    @example(fraction=0.7)
    @example(fraction=0.85)
    def killed_then_resumed(fraction: float) -> None:
        out = tmp_path_factory.mktemp("runs")
        proc = subprocess.Popen(command(data, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(fraction * wall)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        resumed = run_to_end(data, out)
        assert resumed["metrics"] == reference["metrics"]
        assert resumed["n_samples"] == N_ITEMS and resumed["n_errors"] == 0
        assert 0 <= resumed["n_cached"] <= N_ITEMS
        cached_after_kill.append(resumed["n_cached"])

    killed_then_resumed()

    # One kill that certainly lands mid-run, whatever the machine's speed: when the cache holds 20
    # finished samples (the random kills above may all land before the first or after the last).
    out = tmp_path_factory.mktemp("runs")
    proc = subprocess.Popen(command(data, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_cached(out / "cache.sqlite", 20, proc), "the run ended before 20 samples were cached"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    resumed = run_to_end(data, out)
    assert resumed["metrics"] == reference["metrics"] and resumed["n_errors"] == 0
    assert 20 <= resumed["n_cached"] < N_ITEMS, resumed["n_cached"]
    cached_after_kill.append(resumed["n_cached"])


def wait_for_cached(db: Path, n: int, proc: subprocess.Popen, timeout_s: float = 120.0) -> bool:
    """Poll the run's prediction cache (read-only) until it holds `n` rows; False when the run ends first."""
    import sqlite3

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                    if con.execute("SELECT count(*) FROM predictions").fetchone()[0] >= n:
                        return True
            except sqlite3.OperationalError:
                pass  # schema not created yet, or the file is being switched to WAL
        time.sleep(0.01)
    return False


def test_a_cache_locked_for_a_while_loses_no_finished_sample(tmp_path: Path) -> None:
    """Another process holds the result cache's write lock for 3 s while a run finishes its samples:
    the run still caches every sample (a re-run computes nothing) and prints the same numbers."""
    import sqlite3
    import threading

    data = write_items(tmp_path / "toy", N_ITEMS)
    out = tmp_path / "runs"
    first = subprocess.run([*command(data, out), "--limit", "1"], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr  # creates runs/cache.sqlite
    holder = sqlite3.connect(out / "cache.sqlite", isolation_level=None, check_same_thread=False, timeout=30)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(3.0, lambda: holder.execute("ROLLBACK"))
    release.start()
    try:
        locked = run_to_end(data, out)
    finally:
        release.join()
        holder.close()
    again = run_to_end(data, out)
    assert again["n_cached"] == N_ITEMS  # everything computed under the lock reached the cache
    assert again["metrics"] == locked["metrics"]
