"""Gaps found by an audit of issues 7 (Core v2) and 9 (Reliability). Each fixed defect has a test that
failed before its fix (said in its docstring or name); bullets that had no test get one here too (scoring
off the event loop, Ray resource requests), with fakes instead of a Ray cluster."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import toy_task

from harness.cli import main
from harness.core import Sample, ScoreContext
from harness.registry import register_solver, register_task
from harness.runner import RunConfig, run

settings = toy_task.run_settings  # toy_data: the conftest fixture


@register_task
class ToyCpuScoredTask(toy_task.ToyTask):
    """Toy items whose scoring is CPU work handed to `ctx.run_cpu`; records which thread ran it."""

    name = "toycpu"
    THREADS: list[str] = []

    async def ascore(self, sample: Sample, prediction, ctx: ScoreContext):
        def heavy() -> dict:
            ToyCpuScoredTask.THREADS.append(threading.current_thread().name)
            return {"correct": float(prediction == sample.target)}

        return await ctx.run_cpu(heavy)


@register_solver("echo", tasks=("toycpu",))
class CpuScoredEcho(toy_task.EchoSolver):
    """Right parity."""


def test_cpu_heavy_scoring_runs_in_the_score_pool_not_on_the_event_loop(tmp_path, toy_data):
    ToyCpuScoredTask.THREADS.clear()
    res = run(RunConfig("toycpu", solver="echo", n_boot=20), settings(tmp_path, toy_data))
    assert res.n_errors == 0 and res.metrics["accuracy"].value == 1.0
    assert len(ToyCpuScoredTask.THREADS) == 40
    assert all(name.startswith("harness-score") for name in ToyCpuScoredTask.THREADS)


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


class _Answering:
    """A model backend that answers every request, counting the calls."""

    model, endpoint = "counting", "stub://counting"

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, request):
        from harness.models.base import ChatResponse

        self.calls += 1
        return ChatResponse(text=f"answer {self.calls}", model="counting")

    async def aclose(self) -> None:
        pass


def _ask(text: str):
    from harness.models.base import ChatRequest, Message

    return ChatRequest((Message.text("user", text),))


def test_model_call_cache_writes_happen_off_the_event_loop(tmp_path, monkeypatch):
    import asyncio
    import threading

    from harness.models.wrappers import CachedBackend

    writers: list[int] = []
    put = CachedBackend.put
    monkeypatch.setattr(CachedBackend, "put", lambda self, key, response: (writers.append(threading.get_ident()),
                                                                         put(self, key, response)))
    backend = CachedBackend(_Answering(), tmp_path)

    async def go() -> int:
        await backend.chat(_ask("q"))
        await backend.aclose()
        return threading.get_ident()

    loop_thread = asyncio.run(go())
    assert len(writers) == 1 and writers[0] != loop_thread


def test_a_locked_model_call_cache_never_fails_an_answered_request(tmp_path, monkeypatch):
    """Another process holds model_cache.sqlite past the busy timeout: the answer is still the sample's,
    and the failed write is said once (before, the request raised 'database is locked')."""
    import asyncio
    import sqlite3

    from harness.models import wrappers

    monkeypatch.setattr(wrappers.CachedBackend, "busy_timeout_s", 0.05)
    inner = _Answering()
    backend = wrappers.CachedBackend(inner, tmp_path)
    holder = sqlite3.connect(tmp_path / "model_cache.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")

    async def go():
        out = [await backend.chat(_ask(f"q{i}")) for i in range(3)]
        return out

    try:
        with pytest.warns(UserWarning, match="model_cache.sqlite.*not cached") as caught:
            answers = asyncio.run(go())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [a.text for a in answers] == ["answer 1", "answer 2", "answer 3"]
    assert len([w for w in caught if "model_cache" in str(w.message)]) == 1  # said once
    asyncio.run(backend.chat(_ask("q3")))  # the lock is gone: stored again
    assert asyncio.run(backend.chat(_ask("q3"))).cached and inner.calls == 4
    asyncio.run(backend.aclose())


class _FakeRay:
    """What RayExecutor asks of the `ray` module, recorded: the actor options and how many actors."""

    def __init__(self, available: dict) -> None:
        self.available, self.options, self.actors, self.put_objects = available, [], [], []

    def is_initialized(self) -> bool:
        return True

    def available_resources(self) -> dict:
        return dict(self.available)

    def put(self, obj):
        self.put_objects.append(obj)
        return obj

    def remote(self, **opts):
        self.options.append(opts)
        fake = self

        def wrap(cls):
            class Handle:
                @staticmethod
                def remote(*args):
                    fake.actors.append(args)
                    return object()

            return Handle

        return wrap

    def kill(self, actor) -> None:
        pass


def _executor(monkeypatch, available: dict, concurrency: int = 64):
    import sys

    from harness.core import RunContext
    from harness.executors import RayExecutor

    fake = _FakeRay(available)
    monkeypatch.setitem(sys.modules, "ray", fake)
    return fake, RayExecutor(RunConfig("toy", solver="echo"), RunContext(), concurrency)


def test_ray_actors_ask_for_the_solvers_declared_resources(monkeypatch):
    from harness.core import Solver

    class GpuSolver(Solver):
        name = "gpu-solver"
        resources = {"num_gpus": 1, "num_cpus": 2, "accelerator_type:H100": 0.5}

        async def solve(self, sample):
            return None

    fake, executor = _executor(monkeypatch, {"CPU": 16.0, "GPU": 3.0})
    executor._pool(GpuSolver())
    assert fake.options == [{"num_cpus": 2.0, "num_gpus": 1.0, "resources": {"accelerator_type:H100": 0.5}}]
    assert len(fake.actors) == 3  # one actor per free GPU (CPUs would allow 8)
    assert fake.put_objects == [] and all(a[0] is None for a in fake.actors)  # zero-shot: rebuilt in the actor


def test_ray_ships_a_fitted_solver_and_refuses_a_gpu_solver_without_gpus(monkeypatch):
    from harness.core import HarnessError, Solver

    class Fitted(Solver):
        name = "fitted"

        def fit(self, train):
            self.n = len(train)

        async def solve(self, sample):
            return None

    solver = Fitted()
    fake, executor = _executor(monkeypatch, {"CPU": 4.0}, concurrency=2)
    executor._pool(solver)
    assert fake.options == [{"num_cpus": 1.0}] and len(fake.actors) == 2  # default 1 CPU; --concurrency caps
    assert fake.put_objects == [solver] and all(a[0] is solver for a in fake.actors)  # the fitted state travels

    class GpuSolver(Fitted):
        resources = {"num_gpus": 1}

    with pytest.raises(HarnessError, match="has no free GPU"):
        executor._pool(GpuSolver())


@register_solver("constant", tasks=("toyjudged",))
class JudgedConstant(toy_task.ConstantSolver):
    """Always the same label."""


def test_a_model_scored_sample_whose_target_changed_is_scored_afresh(tmp_path):
    """Scores made with models are cached by prediction; the same prediction against a corrected target
    (a fixed label file, another copy of the data) must not reuse the score made against the old one."""
    import json as _json

    import toy_v2  # noqa: F401  (registers toyjudged)
    from servers.fake_openai import FakeOpenAIServer, ServerConfig

    first, fixed = tmp_path / "first", tmp_path / "fixed"
    toy_task.write_items(first, 6)
    fixed.mkdir()
    items = _json.loads((first / "items.json").read_text())
    (fixed / "items.json").write_text(_json.dumps([{**it, "x": 2 * i + 1} for i, it in enumerate(items)]))  # all odd
    with FakeOpenAIServer(ServerConfig(served_models=("judge-m",))) as judge:
        cfg = RunConfig("toyjudged", solver="constant", roles=(f"judge=judge-m@{judge.base_url}",), n_boot=20)
        a = run(cfg, settings(tmp_path, first))
        b = run(cfg, settings(tmp_path, fixed))
    assert [r.prediction for r in a.records] == [r.prediction for r in b.records]  # the same predictions
    assert [r.scores["correct"] for r in a.records] == [float(r.target is True) for r in a.records]
    assert [r.scores["correct"] for r in b.records] == [0.0] * 6  # every target is now False


def test_harness_score_says_when_the_runs_data_is_gone(tmp_path, toy_data):
    res = run(RunConfig("toy", solver="echo", n_boot=20), settings(tmp_path, toy_data))
    toy_data.rename(tmp_path / "moved")
    with pytest.warns(UserWarning, match=f"re-scoring from samples.jsonl alone: the run's data {toy_data} is not"):
        assert main(["score", res.run_id, "--out", str(tmp_path / "runs")]) == 0


@pytest.mark.parametrize(("argv", "flag"), [
    (["run", "--task", "sarcasm", "--seed", "-1"], "--seed"),
    (["run", "--task", "sarcasm", "--seed", str(2**32)], "--seed"),
    (["run", "--task", "sarcasm", "--bootstrap", "-5"], "--bootstrap"),
    (["score", "some-run", "--bootstrap", "-1"], "--bootstrap"),
    (["compare", "a", "b", "--seed", "-2"], "--seed"),
    (["run", "--task", "sarcasm", "--concurrency", "0"], "--concurrency"),
    (["run", "--task", "sarcasm", "--timeout", "0"], "--timeout"),
    (["run", "--task", "sarcasm", "--timeout", "-3"], "--timeout"),
    (["run", "--task", "sarcasm", "--timeout", "inf"], "--timeout"),
    (["run", "--task", "sarcasm", "--max-retries", "-1"], "--max-retries"),
])
def test_a_seed_or_replicate_count_out_of_range_is_refused_up_front(argv, flag, capsys):
    """Before: the run solved every sample, then ended in a numpy traceback (manifest `failed`)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"argument {flag}: must be" in err and "Traceback" not in err


def test_seed_and_bootstrap_at_their_bounds_are_accepted():
    from harness.cli import build_parser

    args = build_parser().parse_args(["run", "--task", "sarcasm", "--seed", str(2**32 - 1), "--bootstrap", "0"])
    assert args.seed == 2**32 - 1 and args.bootstrap == 0


@pytest.mark.parametrize("text", ['{"verdict": null}', '{"verdict": null, "reason": "unsure"}'])
def test_a_null_verdict_is_invalid_never_the_label_none(text):
    """A rubric whose labels include "none" (JSON-schema rubric): a null verdict was read as str(None)."""
    from types import SimpleNamespace

    from harness.judges import Judge, Rubric

    rubric = Rubric("severity", "1", "How severe? {x}", {"type": "object", "properties": {
        "verdict": {"type": "string", "enum": ["none", "mild", "severe"]}}, "required": ["verdict"]})
    judge = Judge(SimpleNamespace(model="j"), rubric)
    verdict = judge._verdict(text, None, "tag", False)
    assert verdict.value is None and not verdict.ok and "null 'verdict'" in verdict.error
    assert judge._verdict('{"verdict": "none"}', None, "tag", False).value == "none"  # a real "none" still counts


def _avi(path: Path, n: int = 60, fps: int = 5, size: int = 48) -> bytes:
    """An MPEG-4 video (AVI, or what the suffix names) whose frame i has brightness 4*i."""
    from fractions import Fraction

    import av
    import numpy as np

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(n):
            img = np.full((size, size, 3), 4 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def test_frames_of_a_truncated_video_are_an_error_never_earlier_frames_in_their_place(tmp_path):
    """An AVI cut to 3/4 still opens and its container still says 60 frames; sampling frames 37 and 52
    returned frame ~27 twice (labelled with their own timestamps) with no warning."""
    pytest.importorskip("av")
    import numpy as np

    from harness.core import DataError
    from harness.media import sample_frames

    good = _avi(tmp_path / "good.avi")
    frames = sample_frames(tmp_path / "good.avi", 4)
    assert [round(int(np.asarray(f)[0, 0, 0]) / 4) for f in frames] == [7, 22, 37, 52]
    cut = tmp_path / "cut.avi"
    cut.write_bytes(good[: int(len(good) * 0.75)])
    with pytest.raises(DataError, match=r"cut\.avi: truncated or corrupt video: frames decode up to \d+, but the "
                                        r"container declares 60"):
        sample_frames(cut, 4)


def test_frames_of_a_matroska_video_are_sampled_from_the_containers_duration(tmp_path):
    """MKV/WebM streams carry neither a frame count nor a duration: a valid .mkv was refused ("cannot tell
    the number of frames")."""
    pytest.importorskip("av")
    import numpy as np

    from harness.media import sample_frames, video_info

    mkv = tmp_path / "good.mkv"
    _avi(mkv)  # the muxer follows the suffix
    assert video_info(mkv) == (60, 5.0)
    assert [round(int(np.asarray(f)[0, 0, 0]) / 4) for f in sample_frames(mkv, 4)] == [7, 22, 37, 52]


def test_show_leaderboard_and_compare_of_a_run_whose_every_sample_errored(tmp_path, capsys):
    """Every request failed (a dead endpoint): metrics.json holds null values; `harness show` raised
    TypeError (None * scale) instead of printing the run."""
    data = toy_task.write_items(tmp_path / "toy", 4)
    fail = tmp_path / "fail.json"
    fail.write_text(json.dumps([f"s{i}" for i in range(4)]))
    out = tmp_path / "runs"
    assert main(["run", "--task", "toy", "--solver", "flaky", "-S", f"fail_file={fail}", "--data", str(data),
                 "--out", str(out), "--no-progress", "--bootstrap", "20"]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and p.name.startswith("toy-")]
    assert json.loads((run_dir / "metrics.json").read_text())["metrics"]["accuracy"]["value"] is None
    capsys.readouterr()
    assert main(["show", run_dir.name, "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "accuracy" in shown and "—" in shown and "errored 4" in shown
    assert main(["leaderboard", "--task", "toy", "--out", str(out)]) == 0
    assert main(["compare", run_dir.name, run_dir.name, "--out", str(out)]) == 0


def test_compare_refuses_runs_with_other_protocol_options(tmp_path, toy_data, capsys):
    """Two runs of one protocol with other -P options (pad_il's `il` in another domain order) have folds of
    the same names holding other samples: pairing them by (fold, sample) was a silently wrong comparison."""
    a = run(RunConfig("toy", solver="echo", n_boot=20), settings(tmp_path, toy_data))
    b = run(RunConfig("toy", solver="constant", n_boot=20), settings(tmp_path, toy_data))
    out = str(tmp_path / "runs")
    assert main(["compare", a.run_id, b.run_id, "--out", out, "--bootstrap", "50"]) == 0
    manifest = json.loads((b.run_dir / "manifest.json").read_text())
    (b.run_dir / "manifest.json").write_text(json.dumps({**manifest, "protocol_options": {"order": "B,A"}}))
    capsys.readouterr()
    assert main(["compare", a.run_id, b.run_id, "--out", out, "--bootstrap", "50"]) == 2
    assert "runs differ in protocol options (defaults vs {'order': 'B,A'})" in capsys.readouterr().err


def test_compare_refuses_runs_scored_by_other_scorer_versions_until_both_are_rescored(tmp_path, toy_data, capsys):
    a = run(RunConfig("toy", solver="echo", n_boot=20), settings(tmp_path, toy_data))
    b = run(RunConfig("toy", solver="constant", n_boot=20), settings(tmp_path, toy_data))
    out = str(tmp_path / "runs")
    manifest = json.loads((b.run_dir / "manifest.json").read_text())
    (b.run_dir / "manifest.json").write_text(json.dumps({**manifest, "scorer_version": "0"}))
    metrics = json.loads((b.run_dir / "metrics.json").read_text())
    (b.run_dir / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "scorer_version"}))
    capsys.readouterr()
    assert main(["compare", a.run_id, b.run_id, "--out", out, "--bootstrap", "50"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "different scorer versions (1 vs 0)" in err and f"harness score {b.run_id}" in err
    assert main(["score", b.run_id, "--out", out]) == 0  # re-scored with the current scorer: comparable again
    assert main(["compare", a.run_id, b.run_id, "--out", out, "--bootstrap", "50"]) == 0


def test_an_out_that_is_a_file_is_a_clear_error(tmp_path, toy_data, capsys):
    """Before: a NotADirectoryError traceback from deep in the transcript log."""
    not_a_folder = tmp_path / "runs.txt"
    not_a_folder.write_text("")
    code = main(["run", "--task", "toy", "--data", str(toy_data), "--out", str(not_a_folder), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"harness: error: --out {not_a_folder}: cannot create the run folder toy-" in err
    assert "Not a directory" in err


def test_harness_score_into_a_file_is_a_clear_error(tmp_path, toy_data, capsys):
    res = run(RunConfig("toy", solver="echo", n_boot=20), settings(tmp_path, toy_data))
    into = tmp_path / "a-file"
    into.write_text("")
    assert main(["score", res.run_id, "--out", str(tmp_path / "runs"), "--into", str(into)]) == 2
    assert f"harness: error: --into {into}: cannot write the re-scored run there" in capsys.readouterr().err


def test_a_harness_data_root_without_the_tasks_folder_says_where_the_path_came_from(tmp_path, monkeypatch, capsys):
    """A lab-wide HARNESS_DATA holding other datasets: the default job said only 'ROOT/mustard: data folder
    does not exist', with no word of HARNESS_DATA or of the copy shipped with the package."""
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    assert main(["run", "--task", "sarcasm", "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'mustard'}: data folder does not exist (HARNESS_DATA={tmp_path} has no 'mustard'" in err
    assert "unset HARNESS_DATA" in err
    monkeypatch.delenv("HARNESS_DATA")
    assert main(["run", "--task", "sarcasm", "--solver", "majority", "--out", str(tmp_path / "runs"),
                 "--no-progress", "--bootstrap", "10"]) == 0  # unset: the shipped copy
