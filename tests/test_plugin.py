"""A solver in someone else's package is found through the `harness.solvers` entry point and runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO, shared_data_path


def test_entry_point_example_solver_is_found_and_runs(tmp_path):
    data = shared_data_path("mustard")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
         str(REPO / "examples" / "harness-example-solver")],
        check=True, capture_output=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    harness = [sys.executable, "-m", "harness.cli"]
    listing = subprocess.run([*harness, "solvers", "--task", "sarcasm"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "cue-words" in listing.stdout
    out = tmp_path / "runs"
    res = subprocess.run([*harness, "run", "--task", "sarcasm", "--solver", "cue-words", "--data", str(data),
                          "--out", str(out), "--bootstrap", "50", "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    run_dir = next(p for p in out.iterdir() if p.is_dir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_samples"] == 690 and metrics["n_errors"] == 0
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    # the plugin's own rule, recomputed here: sarcastic iff a cue word occurs
    flagged = {r["sample_id"] for r in rows if r["prediction"]}
    assert flagged == {r["sample_id"] for r in rows if r["info"]["cue"]}
    assert 0 < len(flagged) < 690
