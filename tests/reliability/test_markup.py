"""Markup, quotes and traversal strings in user-facing names, options, paths and server errors are
printed literally by every rich view (issue 9, item 4): never a MarkupError, never a swallowed `[old]`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from harness import views
from harness.core import Record
from harness.leaderboard import BoardRow
from harness.progress import RunProgress
from harness.stats import MetricValue

HOSTILE = ["[/]", "[old]", "[bold red]x[/bold red]", "'; DROP TABLE runs; --", '"quoted"', "../../etc/passwd",
           "\\[escaped]", "[link=http://x]y[/link]"]


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    buf = io.StringIO()
    monkeypatch.setattr(views, "console", Console(file=buf, width=400, color_system=None))
    return buf


def _metric(name: str) -> MetricValue:
    return MetricValue(name=name, value=0.5, ci_low=0.4, ci_high=0.6, n=1)


@pytest.mark.parametrize("evil", HOSTILE)
def test_run_summary_prints_names_paths_and_errors_literally(screen: io.StringIO, evil: str) -> None:
    record = Record(sample_id=f"id{evil}", fold="f", target=True, error=f"HTTP 500: server said {evil}")
    result = SimpleNamespace(
        config=SimpleNamespace(task=f"task{evil}", protocol=f"proto{evil}", solver=f"solver{evil}", model=f"m{evil}"),
        metrics={"acc": _metric(f"metric{evil}")}, records=[record], n_cached=0, wall_s=1.0, n_errors=1,
        run_id=f"run{evil}", run_dir=Path(f"runs{evil}/run"),
    )
    views.print_run_summary(result)
    out = screen.getvalue()
    for text in (f"task{evil}", f"metric{evil}", f"server said {evil}", f"run{evil}", str(result.run_dir)):
        assert text in out


@pytest.mark.parametrize("evil", HOSTILE)
def test_board_and_show_and_compare_print_literally(screen: io.StringIO, evil: str) -> None:
    row = BoardRow("measured", f"t{evil}", f"p{evil}", f"tfidf (note={evil})",
                   {f"m{evil}": {"value": 50.0, "ci_low": 40.0, "ci_high": 60.0}}, source=f"run{evil}", n_samples=3,
                   n_errors=0)
    buf = io.StringIO()
    views.print_board([row], "table", out=buf)
    board = buf.getvalue()
    assert f"tfidf (note={evil})" in board.replace("\n", "") or f"note={evil}" in board
    assert f"t{evil}" in board

    manifest = {"run_id": f"run{evil}", "status": "finished", "config": {
        "task": f"t{evil}", "protocol": "p", "solver": "s", "solver_options": {"note": evil}, "model": None},
        "data": f"/data/{evil}", "data_fingerprint": "abc", "git_commit": None}
    metrics = {"metrics": {f"m{evil}": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "scale": 1.0}},
               "n_samples": 1, "n_errors": 0, "n_cached": 0}
    views.print_show(manifest, [], metrics, n_samples=0)
    shown = screen.getvalue()
    assert f"run{evil}" in shown and f"/data/{evil}" in shown and f"m{evil}" in shown
    assert json.dumps({"note": evil})[1:-1].replace('\\"', '"') in shown or repr({"note": evil}) in shown

    comparison = SimpleNamespace(run_a={"run_id": f"a{evil}"}, run_b={"run_id": "b"}, rows=[], n_only_a=0, n_only_b=0)
    views.print_comparison(comparison)
    assert f"a{evil}" in screen.getvalue()


@pytest.mark.parametrize("evil", HOSTILE)
def test_progress_bar_shows_label_and_fold_literally(evil: str) -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=300, force_terminal=True, color_system=None)
    progress = RunProgress(f"task{evil}", 2, console=console)
    with progress:
        progress.start_fold(f"fold{evil}", total=2, cached=0)
        progress.advance(error=False)
    assert f"task{evil} [fold{evil}]" in buf.getvalue()


def test_hostile_names_end_to_end_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--out, sample ids, -S values and solver errors holding markup, quotes and traversal strings: the
    run summary, `show`, `leaderboard` and `compare` print them literally and nothing crashes."""
    import tests.toy_task  # noqa: F401 - registers the toy task
    from harness.cli import main

    evil_id = "s1[/][old]'; DROP TABLE runs; --../../x"
    data = tmp_path / "toy"
    data.mkdir()
    items = [{"id": "s0", "x": 0, "subject": "a"}, {"id": evil_id, "x": 1, "subject": "[b]"}]
    (data / "items.json").write_text(json.dumps(items))
    fail_file = tmp_path / "fail[/]list.json"  # a folder "fail[" holding "]list.json"
    fail_file.parent.mkdir()
    fail_file.write_text(json.dumps([evil_id]))
    out = tmp_path / "exp[/]runs[old]"
    base = ["--data", str(data), "--out", str(out), "--no-progress", "--bootstrap", "20"]
    assert main(["run", "--task", "toy", "--solver", "flaky", "-S", f"fail_file={fail_file}", *base]) == 0
    printed = capsys.readouterr().out
    assert f"boom on {evil_id}" in printed and "exp[/]runs[old]" in printed
    run_id = next(p.name for p in out.iterdir() if p.is_dir())
    assert main(["show", run_id, "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "fail[/]list.json" in shown and run_id in shown
    assert main(["leaderboard", "--task", "toy", "--out", str(out)]) == 0
    board = capsys.readouterr().out
    assert "fail[/]list.json" in board.replace("\n", "").replace(" ", "") or "fail[/]" in board
    assert main(["compare", run_id, run_id, "--out", str(out)]) == 0
    assert run_id in capsys.readouterr().out


@pytest.mark.parametrize("evil", HOSTILE)
def test_model_call_summary_prints_judge_names_literally(screen: io.StringIO, evil: str) -> None:
    views.print_model_calls({"calls": 2, "judge_error": 2, "judges_failed_every_call": [f"judge/m{evil}"]})
    assert f"2 judge call(s) failed; every call of judge/m{evil} failed" in screen.getvalue()
