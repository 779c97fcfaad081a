"""The command line: leaderboard formats, show, compare, tasks/solvers listings, reference rows."""

from __future__ import annotations

import csv
import io
import json

import pytest
import toy_task  # noqa: F401

from harness.cli import main
from harness.core import DataError
from harness.leaderboard import Leaderboard, reference_rows


@pytest.fixture
def toy_env(tmp_path):
    data = toy_task.write_items(tmp_path / "toy", 30)
    out = tmp_path / "runs"
    base = ["--data", str(data), "--out", str(out), "--no-progress"]
    return out, base


def _run(capsys, *args) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def _run_ids(out):
    return sorted(p.name for p in out.iterdir() if p.is_dir())


def test_leaderboard_shows_runs_with_ci_and_csv_json_html(toy_env, capsys):
    out, base = toy_env
    _run(capsys, "run", "--task", "toy", "--solver", "constant", *base)
    _run(capsys, "run", "--task", "toy", "--solver", "echo", *base)
    table = _run(capsys, "leaderboard", "--task", "toy", "--out", str(out))
    assert "measured runs" in table and "constant" in table and "echo" in table
    rows = list(csv.DictReader(io.StringIO(_run(capsys, "leaderboard", "--task", "toy", "--format", "csv",
                                                "--out", str(out)))))
    by_method = {r["method"]: r for r in rows}
    assert float(by_method["echo"]["accuracy"]) == 100.0
    assert float(by_method["constant"]["accuracy"]) == pytest.approx(100 * 15 / 30)
    # every subject cluster holds 3 even and 3 odd numbers, so each resampled replicate is exactly 50 %
    assert float(by_method["constant"]["accuracy_ci_low"]) == 50 == float(by_method["constant"]["accuracy_ci_high"])
    data = json.loads(_run(capsys, "leaderboard", "--task", "toy", "--format", "json", "--out", str(out)))
    assert {d["kind"] for d in data} == {"measured"} and len(data) == 2
    assert "<table>" in _run(capsys, "leaderboard", "--format", "html", "--out", str(out))


def test_harness_db_url_selects_the_board(toy_env, capsys, tmp_path, monkeypatch):
    out, base = toy_env
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    monkeypatch.setenv("HARNESS_DB", url)
    _run(capsys, "run", "--task", "toy", "--solver", "echo", *base)
    assert len(Leaderboard(url).measured("toy")) == 1
    monkeypatch.delenv("HARNESS_DB")
    assert not (out / "leaderboard.sqlite").exists()


def test_show_prints_metrics_config_and_samples(toy_env, capsys):
    out, base = toy_env
    _run(capsys, "run", "--task", "toy", "--solver", "constant", *base)
    run_id = _run_ids(out)[0]
    text = _run(capsys, "show", run_id, "--out", str(out), "--samples", "2")
    assert run_id in text and "accuracy" in text and "config hash" in text
    assert text.count('"sample_id"') == 2
    assert main(["show", "nope", "--out", str(out)]) == 2


def test_compare_runs_paired(toy_env, capsys):
    out, base = toy_env
    _run(capsys, "run", "--task", "toy", "--solver", "echo", *base)
    _run(capsys, "run", "--task", "toy", "--solver", "constant", *base)
    a, b = sorted(_run_ids(out), key=lambda r: "constant" in r)  # echo first
    text = _run(capsys, "compare", a, b, "--out", str(out), "--bootstrap", "200")
    assert "50.00" in text  # echo 100 % - constant 50 %
    assert "shared samples 30" in text


def test_tasks_and_solvers_listings(capsys):
    text = _run(capsys, "tasks")
    assert "toy" in text and "2fold" in text
    text = _run(capsys, "solvers", "--task", "toy")
    assert "flaky" in text and "Predicts the right parity." in text


def test_reference_rows_are_read_and_validated(tmp_path):
    (tmp_path / "t.toml").write_text(
        '[[reference]]\npaper = "P"\narxiv = "1"\ntable = "T2"\nprotocol = "p"\nmethod = "m"\nverified = true\n'
        "[reference.metrics]\nf1 = 64.6\n")
    rows = reference_rows("t", folder=tmp_path)
    assert rows[0].kind == "reference" and rows[0].metrics["f1"]["value"] == 64.6 and rows[0].verified
    (tmp_path / "bad.toml").write_text("[[reference]]\npaper = \n")
    with pytest.raises(DataError, match="bad.toml"):
        reference_rows("bad", folder=tmp_path)
    (tmp_path / "bad.toml").write_text('[[reference]]\npaper = "x"\n')
    with pytest.raises(DataError, match="lacks protocol, method, metrics"):
        reference_rows("bad", folder=tmp_path)


def test_shipped_reference_files_parse():
    rows = reference_rows()
    assert {r.task for r in rows} >= {"sarcasm", "motor", "rppg"}
    for row in rows:
        assert row.kind == "reference" and row.metrics and row.source
