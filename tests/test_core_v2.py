"""Core v2: one pipeline over all folds, honest cache identity, re-scoring, artifacts, splits, sequential
protocols, model roles for scorers, cache writes that fail loudly, manifests that never stay `running`."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import toy_task
import toy_v2
from servers.fake_openai import FakeOpenAIServer, ServerConfig

from harness import cache as cache_mod
from harness.cli import main
from harness.runner import RunConfig, run

TESTS = Path(__file__).parent


settings = toy_task.run_settings  # toy_data: the conftest fixture


def test_zero_shot_solver_has_no_barrier_between_folds(tmp_path, toy_data):
    toy_v2.IN_FLIGHT.update(now=0, max=0)
    res = run(RunConfig("toy", protocol="2fold", solver="inflight", solver_options=(("delay", 0.3),)),
              settings(tmp_path, toy_data, concurrency=40))
    assert res.n_errors == 0 and len(res.records) == 40
    # Both folds' 20 samples were in flight together: the second fold did not wait for the first.
    assert toy_v2.IN_FLIGHT["max"] == 40


def test_trained_solver_gets_its_own_fitted_state_per_fold(tmp_path, toy_data):
    res = run(RunConfig("toy", protocol="2fold", solver="train-ids"), settings(tmp_path, toy_data, concurrency=16))
    # Every test sample is outside the train part its fold's solver was fitted on.
    assert res.n_errors == 0 and all(r.prediction is False for r in res.records)
    assert [r.fold for r in res.records] == ["f1"] * 20 + ["f2"] * 20


def test_changed_solver_version_or_prompt_misses_the_cache(tmp_path, toy_data, monkeypatch):
    cfg = RunConfig("toy", solver="echo")
    assert run(cfg, settings(tmp_path, toy_data)).n_cached == 0
    assert run(cfg, settings(tmp_path, toy_data)).n_cached == 40
    monkeypatch.setattr(toy_task.EchoSolver, "version", "2")
    assert run(cfg, settings(tmp_path, toy_data)).n_cached == 0
    monkeypatch.setattr(toy_task.EchoSolver, "prompt_digest", lambda self: "another prompt")
    assert run(cfg, settings(tmp_path, toy_data)).n_cached == 0
    monkeypatch.setattr(toy_task.ToyTask, "version", "2")
    assert run(cfg, settings(tmp_path, toy_data)).n_cached == 0
    assert run(cfg, settings(tmp_path, toy_data)).n_cached == 40


def test_cached_predictions_are_rescored_with_a_changed_scorer(tmp_path, toy_data, monkeypatch):
    cfg = RunConfig("toy", solver="constant")
    first = run(cfg, settings(tmp_path, toy_data))
    assert first.metrics["accuracy"].value == pytest.approx(0.5)
    # A scorer fix: the per-sample score now counts every prediction as right.
    monkeypatch.setattr(toy_task.ToyTask, "score", lambda self, s, p: {"correct": 1.0})
    monkeypatch.setattr(toy_task.ToyTask, "metrics", lambda self, protocol: [
        toy_task.Metric("accuracy", mean_of="correct")])
    second = run(cfg, settings(tmp_path, toy_data))
    assert second.n_cached == 40 and second.metrics["accuracy"].value == 1.0
    assert all(r.scores == {"correct": 1.0} for r in second.records)


def test_harness_score_rescores_a_finished_run_from_samples_jsonl(tmp_path, toy_data, monkeypatch, capsys):
    res = run(RunConfig("toy", solver="constant", n_boot=50), settings(tmp_path, toy_data))
    assert res.metrics["accuracy"].value == pytest.approx(0.5)
    monkeypatch.setattr(toy_task.ToyTask, "metrics", lambda self, protocol: [
        toy_task.Metric("accuracy", mean_of="correct"), toy_task.Metric("wrong", mean_of="wrong")])
    monkeypatch.setattr(toy_task.ToyTask, "score", lambda self, s, p: {"correct": float(p == s.target),
                                                                        "wrong": float(p != s.target)})
    into = tmp_path / "rescored"
    assert main(["score", res.run_id, "--out", str(tmp_path / "runs"), "--into", str(into)]) == 0
    m = json.loads((into / "metrics.json").read_text())
    assert m["metrics"]["accuracy"]["value"] == pytest.approx(0.5)
    assert m["metrics"]["wrong"]["value"] == pytest.approx(0.5)
    lines = [json.loads(x) for x in (into / "samples.jsonl").read_text().splitlines()]
    assert all(x["scores"]["wrong"] == float(x["prediction"] != x["target"]) for x in lines)
    # In place by default.
    assert main(["score", res.run_id, "--out", str(tmp_path / "runs")]) == 0
    assert "wrong" in json.loads((res.run_dir / "metrics.json").read_text())["metrics"]


def test_artifacts_survive_a_cached_rerun_and_show_lists_them(tmp_path, toy_data, capsys):
    cfg = RunConfig("toy", solver="artifact")
    first = run(cfg, settings(tmp_path, toy_data))
    refs = {r.sample_id: r.artifacts["image"] for r in first.records}
    assert len(set(refs.values())) == 40
    store_root = tmp_path / "runs" / "artifacts"
    assert all((store_root / ref).is_file() for ref in refs.values())
    second = run(cfg, settings(tmp_path, toy_data))
    assert second.n_cached == 40 and {r.sample_id: r.artifacts["image"] for r in second.records} == refs
    from harness.artifacts import ArtifactStore

    img = ArtifactStore(store_root).load_image(refs["s7"])
    assert img.shape == (8, 8, 3) and int(img[0, 0, 0]) == 7
    assert main(["show", second.run_id, "--out", str(tmp_path / "runs"), "--sample", "s7"]) == 0
    assert refs["s7"] in capsys.readouterr().out


def test_dev_split_is_solved_recorded_and_kept_out_of_test_metrics(tmp_path, toy_data):
    res = run(RunConfig("toydev", solver="echo"), settings(tmp_path, toy_data))
    splits = [r.split for r in res.records]
    assert splits.count("dev") == 10 and splits.count("test") == 30
    assert res.metrics["accuracy"].n == 30 and res.metrics["dev_accuracy"].n == 10
    again = run(RunConfig("toydev", solver="echo"), settings(tmp_path, toy_data))
    assert again.n_cached == 40 and [r.split for r in again.records] == splits


def test_sequential_protocol_fits_in_order_and_reports_the_accuracy_matrix(tmp_path):
    data = toy_v2.write_domains(tmp_path / "seq", n=12)
    toy_v2.FIT_LOG.clear()
    res = run(RunConfig("toyseq", n_boot=20), settings(tmp_path, data))
    assert toy_v2.FIT_LOG == ["A", "B", "C"]
    # Offsets A=0, B=1, C=0. After step A the solver knows offset 0 (A right); after B offset 1 (A wrong,
    # B right); after C offset 0 (A right, B wrong, C right). Accuracy matrix R[step][domain]:
    seq = json.loads((res.run_dir / "metrics.json").read_text())["report"]["sequential"]
    assert seq["steps"] == ["step-A", "step-B", "step-C"] and seq["domains"] == ["A", "B", "C"]
    m = seq["matrix"]
    assert m[0][0] == 1.0 and m[1][0] == 0.0 and m[1][1] == 1.0 and m[2] == [1.0, 0.0, 1.0]
    # BWT = mean over i < T-1 of R[T-1][i] - R[i][i] = ((1 - 1) + (0 - 1)) / 2
    assert seq["bwt"] == pytest.approx(-0.5)
    # Resume: everything cached, no fit needed.
    toy_v2.FIT_LOG.clear()
    again = run(RunConfig("toyseq", n_boot=20), settings(tmp_path, data))
    assert again.n_cached == len(res.records) and toy_v2.FIT_LOG == []


def test_sequential_fit_is_never_skipped_while_a_later_step_needs_the_state(tmp_path):
    data = toy_v2.write_domains(tmp_path / "seq", n=12)
    first = run(RunConfig("toyseq", n_boot=20), settings(tmp_path, data))
    # Drop step C's cached predictions only: steps A and B must still be fitted to rebuild C's state.
    with sqlite3.connect(tmp_path / "runs" / "cache.sqlite") as db:
        scope = db.execute("SELECT scope FROM scopes WHERE fold='step-C'").fetchone()[0]
        db.execute("DELETE FROM predictions WHERE scope=?", (scope,))
    toy_v2.FIT_LOG.clear()
    again = run(RunConfig("toyseq", n_boot=20), settings(tmp_path, data))
    assert toy_v2.FIT_LOG == ["A", "B", "C"]
    assert [r.prediction for r in again.records] == [r.prediction for r in first.records]


def test_scorer_with_a_model_role_on_its_own_endpoint(tmp_path, toy_data):
    with FakeOpenAIServer(ServerConfig(served_models=("judge-m",))) as judge_srv:
        cfg = RunConfig("toyjudged", solver="echo", roles=(f"judge=judge-m@{judge_srv.base_url}",), limit=6)
        res = run(cfg, settings(tmp_path, toy_data, base_url="http://127.0.0.1:9/v1"))
        assert res.n_errors == 0 and all("judge_said" in r.scores for r in res.records)
        assert judge_srv.stats()["completed"] == 6
        # Scores made by models are cached with the prediction and role: no new judge calls on a re-run.
        again = run(cfg, settings(tmp_path, toy_data))
        assert again.n_cached == 6 and judge_srv.stats()["completed"] == 6
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    assert manifest["roles"]["judge"] == {"model": "judge-m", "base_url": judge_srv.base_url}


def test_a_locked_cache_is_retried_until_stored(tmp_path, toy_data, monkeypatch):
    monkeypatch.setattr(cache_mod, "BUSY_TIMEOUT_S", 0.05)
    out = tmp_path / "runs"
    out.mkdir()
    cache_mod.ResultCache(out / "cache.sqlite").close()
    holder = sqlite3.connect(out / "cache.sqlite", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(1.0, lambda: holder.execute("COMMIT")).start()
    res = run(RunConfig("toy", solver="echo"), settings(tmp_path, toy_data))
    assert res.cache_error is None
    holder.close()
    assert run(RunConfig("toy", solver="echo"), settings(tmp_path, toy_data)).n_cached == 40


def test_an_unwritable_cache_fails_the_run_at_the_end_with_its_files_complete(tmp_path, toy_data, monkeypatch):
    def broken(self):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(cache_mod._Writer, "_store", broken)
    monkeypatch.setattr(cache_mod.ResultCache, "close", _short_close(cache_mod.ResultCache.close))
    code = main(["run", "--task", "toy", "--solver", "echo", "--data", str(toy_data), "--out", str(tmp_path / "runs"),
                 "--no-progress"])
    assert code == 3
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and p.name.startswith("toy-")]
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "finished"
    assert len((run_dir / "samples.jsonl").read_text().splitlines()) == 40


def _short_close(close):
    def wrapped(self, timeout_s: float = 10.0):
        return close(self, timeout_s=0.3)

    return wrapped


def test_a_failure_after_the_solve_loop_marks_the_manifest_failed(tmp_path, toy_data, monkeypatch):
    import harness.runner as runner_mod

    def boom(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(runner_mod, "write_samples", boom)
    with pytest.raises(OSError):
        run(RunConfig("toy", solver="echo"), settings(tmp_path, toy_data))
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and p.name.startswith("toy-")]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "No space left" in manifest["error"]


def test_sigterm_marks_the_manifest_interrupted(tmp_path, toy_data):
    script = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import toy_task; from harness.cli import main; "
              "raise SystemExit(main(sys.argv[1:]))")
    args = [sys.executable, "-c", script, "run", "--task", "toy", "--solver", "slow", "-S", "delay=0.2",
            "--concurrency", "1", "--data", str(toy_data), "--out", str(tmp_path / "runs"), "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    manifests: list[Path] = []
    while time.time() < deadline and not manifests:
        time.sleep(0.1)
        manifests = list((tmp_path / "runs").glob("toy-*/manifest.json"))
    time.sleep(1.0)
    proc.terminate()
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert json.loads(manifests[0].read_text())["status"] == "interrupted"


def test_the_same_model_on_another_endpoint_is_computed_afresh(tmp_path, shared_data):
    data = shared_data("mustard")
    cfg = RunConfig("sarcasm", solver="mllm", model="fake-model", limit=2, n_boot=20)
    with FakeOpenAIServer(ServerConfig()) as a, FakeOpenAIServer(ServerConfig()) as b:
        first = run(cfg, settings(tmp_path, data, base_url=a.base_url))
        again = run(cfg, settings(tmp_path, data, base_url=a.base_url))
        other = run(cfg, settings(tmp_path, data, base_url=b.base_url))
        assert first.n_cached == 0 and again.n_cached == 10 and other.n_cached == 0
        assert a.stats()["completed"] == 10 and b.stats()["completed"] == 10


def test_a_batch_solvers_per_sample_exception_is_that_samples_error(tmp_path, toy_data):
    res = run(RunConfig("toy", solver="batch-some-fail", limit=10), settings(tmp_path, toy_data))
    bad = {r.sample_id: r.error for r in res.records if not r.ok}
    assert set(bad) == {"s3"} and bad["s3"].startswith("DataError: s3.png: unreadable")
    assert sum(r.ok for r in res.records) == 9


def test_protocol_options_are_refused_by_a_task_that_takes_none(tmp_path, toy_data, capsys):
    code = main(["run", "--task", "toy", "--data", str(toy_data), "--out", str(tmp_path / "runs"), "--no-progress",
                 "-P", "order=A,B"])
    assert code == 2 and "takes no protocol options" in capsys.readouterr().err


def test_a_scoring_failure_is_in_samples_jsonl_and_the_prediction_stays_cached(tmp_path, toy_data, monkeypatch):
    def picky(self, sample, prediction):
        if sample.id == "s5":
            raise ValueError("cannot score s5")
        return {"correct": float(prediction == sample.target)}

    monkeypatch.setattr(toy_task.ToyTask, "score", picky)
    res = run(RunConfig("toy", solver="echo", n_boot=20), settings(tmp_path, toy_data))
    lines = {x["sample_id"]: x for x in map(json.loads, (res.run_dir / "samples.jsonl").read_text().splitlines())}
    assert lines["s5"]["error"] == "scoring failed: ValueError: cannot score s5" and lines["s5"]["scores"] == {}
    assert lines["s4"]["error"] is None and lines["s4"]["scores"] == {"correct": 1.0}
    assert res.metrics["accuracy"].n == 39
    monkeypatch.undo()  # the scorer is fixed: the cached prediction of s5 is scored now
    again = run(RunConfig("toy", solver="echo", n_boot=20), settings(tmp_path, toy_data))
    assert again.n_cached == 40 and again.n_errors == 0 and again.metrics["accuracy"].n == 40


def test_a_run_without_data_names_the_command_that_makes_a_synthetic_copy_and_it_works(tmp_path, capsys,
                                                                                       monkeypatch):
    import importlib.util
    import shlex

    from harness.registry import get_task, task_names

    monkeypatch.delenv("HARNESS_DATA", raising=False)
    assert main(["run", "--task", "motor", "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    hint = err.split("to try it on a small synthetic copy: ", 1)[1]
    make, run_it = (shlex.split(part) for part in hint.split(" && "))
    assert make[:3] == ["python", "-m", "tasks.motor.fixture"] and run_it[:4] == ["harness", "run", "--task", "motor"]
    folder = tmp_path / "motor"  # the hint's command, into a test folder instead of /tmp/motor
    subprocess.run([sys.executable, "-m", make[2], str(folder), *make[4:]], check=True, capture_output=True,
                   cwd=Path(__file__).resolve().parents[1], timeout=120)
    argv = [str(folder) if a == make[3] else a for a in run_it[1:]]
    assert main([*argv, "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    assert get_task("motor").data_status(None).endswith("to try: python -m tasks.motor.fixture /tmp/motor")
    for name in task_names():  # every task's hint names a module that exists and writes into its folder
        example = get_task(name).example_data
        if example:
            command, folder = example
            words = shlex.split(command)
            assert words[:2] == ["python", "-m"] and importlib.util.find_spec(words[2]) is not None
            assert words[3] == folder


def test_a_media_file_replaced_in_place_is_recomputed_while_the_manifest_fingerprint_stays_portable(tmp_path,
                                                                                                    toy_data):
    import os

    frame = toy_data / "frames" / "0001.png"
    frame.parent.mkdir()
    frame.write_bytes(b"x" * 64)
    os.utime(frame, ns=(1_000_000_000, 1_000_000_000))
    first = run(RunConfig("toy", solver="echo", n_boot=20), settings(tmp_path, toy_data))
    assert run(RunConfig("toy", solver="echo", n_boot=20), settings(tmp_path, toy_data)).n_cached == 40
    frame.write_bytes(b"y" * 64)  # same name and size, new content and mtime: the cache must not serve it
    os.utime(frame, ns=(2_000_000_000, 2_000_000_000))
    again = run(RunConfig("toy", solver="echo", n_boot=20), settings(tmp_path, toy_data))
    assert again.n_cached == 0
    fps = [json.loads((r.run_dir / "manifest.json").read_text())["data_fingerprint"] for r in (first, again)]
    assert fps[0] == fps[1]  # names, sizes and annotations unchanged: any faithful copy is the same data


def test_a_cached_prediction_is_scored_against_the_loaders_current_target(tmp_path, toy_data, monkeypatch):
    """A loader fix that reads the same files differently (no task version bump): the cached predictions
    are reused, but scored and written with the targets and groups the loader gives now."""
    first = run(RunConfig("toy", solver="echo", n_boot=20), settings(tmp_path, toy_data))
    assert first.metrics["accuracy"].value == 1.0
    original = toy_task.ToyTask.folds

    def flipped(self, data_dir, protocol):
        return [dataclasses.replace(f, test=[dataclasses.replace(s, target=not s.target, groups={"subject": "q"})
                                             for s in f.test]) for f in original(self, data_dir, protocol)]

    monkeypatch.setattr(toy_task.ToyTask, "folds", flipped)
    again = run(RunConfig("toy", solver="echo", n_boot=20), settings(tmp_path, toy_data))
    assert again.n_cached == 40 and again.metrics["accuracy"].value == 0.0
    lines = [json.loads(x) for x in (again.run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(d["target"] is (d["prediction"] is False) and d["groups"] == {"subject": "q"} for d in lines)
    assert all(d["scores"] == {"correct": 0.0} for d in lines)


def test_a_role_the_task_never_reads_is_refused_naming_the_ones_it_does(tmp_path, capsys):
    """`--role recogniser=...` (a typo) used to be ignored: the run scored with the default recogniser."""
    data = toy_task.write_items(tmp_path / "toy", 4)
    base = ["--out", str(tmp_path / "runs"), "--no-progress", "--db", f"sqlite:///{tmp_path / 'lb.db'}"]
    assert main(["run", "--task", "gait_deid", "--data", str(tmp_path), "--role", "recogniser=gei", *base]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "reads no role 'recogniser' (did you mean 'recognizer'?)" in err and "recognizer, screener" in err
    assert main(["run", "--task", "sarcasm", "--judge", "m@http://127.0.0.1:9/v1", "--role", "editor=x", *base]) == 2
    assert "reads no role 'editor'" in capsys.readouterr().err
    # a task that declares nothing (a plug-in such as the toy task) keeps accepting any role
    assert main(["run", "--task", "toy", "--data", str(data), "--role", "anything=x", *base]) == 0
