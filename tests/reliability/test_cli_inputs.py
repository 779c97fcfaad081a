"""Hostile but plausible command lines (issue 9, item 7): `-S scale=false` means false, `--limit -3`
is refused, an unknown task on the board says so, and a board URL's password is never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import build_parser, main
from harness.core import RunContext
from harness.registry import get_task, make_solver


@pytest.mark.parametrize("text", ["scale=false", "scale=False", "scale=0", "scale=no", "scale=off"])
def test_tfidf_reads_scale_false_as_false(text: str) -> None:
    (option,) = build_parser().parse_args(["run", "--task", "sarcasm", "-S", text]).solver_options
    solver = make_solver(get_task("sarcasm"), "tfidf", RunContext(), dict([option]))
    assert solver.options["scale"] is False
    assert solver.identity() == make_solver(get_task("sarcasm"), "tfidf", RunContext(), {}).identity()
    train = get_task("sarcasm").folds(get_task("sarcasm").resolve_data(None), "speaker-dependent")[0].train
    solver.fit(train[:60])
    assert [type(step).__name__ for step in solver.model.named_steps.values()][-1] == "LinearSVC"
    assert "StandardScaler" not in [type(step).__name__ for step in solver.model.named_steps.values()]


@pytest.mark.parametrize("limit", ["-3", "0", "two"])
def test_a_limit_below_one_is_refused(limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--task", "sarcasm", "--limit", limit])
    assert exit_info.value.code == 2 and "--limit" in capsys.readouterr().err


def test_leaderboard_for_an_unknown_task_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "--task", "nonexistent", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'nonexistent'" in err and "sarcasm" in err
    assert main(["leaderboard", "--task", "sarcasm", "--format", "json", "--out", str(tmp_path)]) == 0
    assert all(row["task"] == "sarcasm" for row in json.loads(capsys.readouterr().out))


@pytest.mark.parametrize("command", [["leaderboard"], ["doctor", "--no-gpu"]])
def test_board_url_passwords_are_masked(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list) -> None:
    url = "postgresql+psycopg://alice:hunter2-secret@127.0.0.1:1/harness"
    code = main([*command, "--db", url, "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code != 0
    assert "hunter2-secret" not in captured.out + captured.err
    assert "alice:***@127.0.0.1" in captured.out + captured.err
