"""The foundation's acceptance run, through the command line on the real MUStARD data."""

from __future__ import annotations

import json

import pytest
from conftest import shared_data_path

from harness.cli import main


def _metrics(out, run_prefix):
    (run,) = [p for p in out.iterdir() if p.name.startswith(run_prefix)]
    return json.loads((run / "metrics.json").read_text())


def test_majority_then_tfidf_then_cached_rerun_and_the_board(tmp_path, capsys):
    data = shared_data_path("mustard")
    out = tmp_path / "runs"
    base = ["--protocol", "speaker-dependent", "--data", str(data), "--out", str(out), "--no-progress"]
    assert main(["run", "--task", "sarcasm", "--solver", "majority", *base]) == 0
    majority = _metrics(out, "sarcasm-majority")["metrics"]
    assert majority["weighted_f1"]["value"] * 100 == pytest.approx(33.33, abs=0.1)
    assert "macro_f1" in majority

    assert main(["run", "--task", "sarcasm", "--solver", "tfidf", *base]) == 0
    first = _metrics(out, "sarcasm-tfidf")
    f1 = first["metrics"]["weighted_f1"]
    assert 0.55 <= f1["value"] <= 0.72 and f1["ci_low"] < f1["value"] < f1["ci_high"]
    capsys.readouterr()

    before = {p.name for p in out.iterdir()}
    assert main(["run", "--task", "sarcasm", "--solver", "tfidf", *base]) == 0
    printed = capsys.readouterr().out
    assert "from cache: 690" in printed and "computed: 0" in printed
    (rerun,) = [p for p in out.iterdir() if p.name not in before and p.name.startswith("sarcasm-tfidf")]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("sarcasm-tfidf"))[-1] == rerun.name
    again = json.loads((rerun / "metrics.json").read_text())
    assert again["n_cached"] == 690 and again["metrics"] == first["metrics"]

    assert main(["leaderboard", "--task", "sarcasm", "--format", "json", "--out", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out)
    measured = [r for r in rows if r["kind"] == "measured"]
    assert sorted(r["method"] for r in measured) == ["majority", "tfidf", "tfidf"]
    assert any(r["kind"] == "reference" and r["protocol"] == "speaker-dependent" for r in rows)
