"""The MLLM path end to end through `harness run` against fake servers: every call in transcripts.jsonl,
token totals per role in metrics.json, the failure taxonomy, sampling options reaching the request,
`-S video=video`, `-S epochs=K` with the per-epoch metrics by hand, mas-vote's sampling, judges on their
own endpoints (and one that 404s), and `harness show RUN --sample ID`."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tasks.motor.fixture import write_fixture
from tests.servers.fake_openai import FakeOpenAIServer, ServerConfig

HEADS = ("behavior", "cognition", "emotion")


@pytest.fixture(scope="module")
def motor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("motor"), 6)


def _run(args: list[str], out: Path) -> tuple[dict[str, Any], Path]:
    assert main(["run", *args, "--out", str(out), "--no-progress", "--bootstrap", "50"]) == 0
    run_dir = next(p for p in out.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["samples"] = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return metrics, run_dir


def transcripts(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "transcripts.jsonl").read_text().splitlines()]


def schema_answer(prompt: str, body: dict[str, Any]) -> str:
    """A valid answer for any schema: the first enum value, or by the seed for the label heads."""
    schema = body["response_format"]["json_schema"]["schema"]
    props = schema.get("properties", {})
    out: dict[str, Any] = {}
    for key, spec in props.items():
        enum = spec.get("enum") or schema.get("$defs", {}).get(str(spec.get("$ref", "")).rsplit("/", 1)[-1], {}).get(
            "enum")
        if enum:
            out[key] = enum[body.get("seed", 0) % len(enum)]
        elif spec.get("type") == "boolean":
            out[key] = True
        elif spec.get("type") == "number":
            out[key] = 0.5
        else:
            out[key] = "seen"
    if "consistent" in props:
        out.update(consistent=True, revise=None)
    return json.dumps(out)


def test_motor_mas_calls_are_all_in_transcripts_and_counted_by_role(motor_dir: Path, tmp_path: Path) -> None:
    from harness import views

    with FakeOpenAIServer(ServerConfig(answer=f"{__name__}:schema_answer")) as srv:
        m, run_dir = _run(["--task", "motor", "--solver", "motor-mas", "--model", "fake-model", "--base-url",
                           srv.base_url, "--data", str(motor_dir), "-S", "frames=2"], tmp_path)
        n_requests = srv.stats()["completed"]
    calls = transcripts(run_dir)
    assert len(calls) == 6 * 4  # three heads and the coordinator per clip, no revision
    assert n_requests == len(calls) - sum(c["cached"] for c in calls)  # identical requests may hit the cache
    for s in m["samples"]:
        mine = [c for c in calls if c["sample"] == s["sample_id"]]
        assert [c["role"] for c in mine] == [e["node"] for e in s["info"]["trace"]]
        by_role = s["info"]["model_calls"]
        assert sorted(by_role) == ["behavior", "cognition", "coordinator", "emotion"]
        for role, counts in by_role.items():
            assert counts["calls"] == 1
            assert counts["prompt_tokens"] == sum(c["prompt_tokens"] for c in mine if c["role"] == role)
    totals = m["model_calls"]
    assert totals["calls"] == 24 and totals["by_role"]["coordinator"]["calls"] == 6
    assert totals["prompt_tokens"] == sum(c["prompt_tokens"] for c in calls)
    assert totals["completion_tokens"] == sum(c["completion_tokens"] for c in calls)
    assert totals["truncated"] == totals["unparseable"] == totals["request_error"] == 0
    head = next(c for c in calls if c["role"] == "cognition")
    video = head["messages"][1]["content"][0]
    assert video["type"] == "video" and video["frames"] == 2 and len(video["timestamps_s"]) == 2
    assert "base64" not in json.dumps(calls)  # media are digests in transcripts, never the bytes

    with views.console.capture() as captured:
        assert main(["show", run_dir.name, "--out", str(tmp_path), "--sample", m["samples"][0]["sample_id"]]) == 0
    text = captured.get()
    for role in ("behavior", "cognition", "emotion", "coordinator"):
        assert f"· {role} ·" in text
    assert "[video " in text and "answer:" in text  # media shown as digest/frames, rich markup escaped


def test_sampling_options_and_video_part_reach_the_request(motor_dir: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(ServerConfig(answer=f"{__name__}:schema_answer")) as srv:
        m, _ = _run(["--task", "motor", "--model", "fake-model", "--base-url", srv.base_url, "--data", str(motor_dir),
                     "-S", "frames=3", "-S", "video=video", "-S", "temperature=0.7", "-S", "max_tokens=77",
                     "--limit", "2"], tmp_path)
        bodies = srv.bodies()
    assert m["n_errors"] == 0 and len(bodies) == 2
    for body in bodies:
        assert body["temperature"] == 0.7 and body["max_tokens"] == 77
        content = body["messages"][1]["content"]
        videos = [p for p in content if p["type"] == "video_url"]
        assert len(videos) == 1 and not [p for p in content if p["type"] == "image_url"]
        assert len(videos[0]["video_url"]["url"].removeprefix("data:video/jpeg;base64,").split(",")) == 3


def test_audio_track_and_video_file_reach_the_request(motor_dir: Path, tmp_path: Path) -> None:
    """`-S audio=true` sends the clip's audio as an input_audio part; `-S video=file` the clip as a file://
    video_url (vLLM --allowed-local-media-path); the transcript records both as digests."""
    import base64

    with FakeOpenAIServer(ServerConfig(answer=f"{__name__}:schema_answer")) as srv:
        m, run_dir = _run(["--task", "motor", "--model", "fake-model", "--base-url", srv.base_url, "--data",
                           str(motor_dir), "-S", "frames=2", "-S", "video=file", "-S", "audio=true", "--limit", "1"],
                          tmp_path)
        (body,) = srv.bodies()
    assert m["n_errors"] == 0 and m["samples"][0]["sample_id"] == "clip000"
    content = body["messages"][1]["content"]
    assert [p["type"] for p in content] == ["video_url", "input_audio", "text"]
    assert content[0]["video_url"]["url"] == (motor_dir / "videos" / "clip000.mp4").resolve().as_uri()
    audio = content[1]["input_audio"]
    assert audio["format"] == "wav"
    assert base64.b64decode(audio["data"]) == (motor_dir / "audio" / "clip000.wav").read_bytes()
    (call,) = transcripts(run_dir)
    parts = call["messages"][1]["content"]
    assert parts[0]["as"] == "file" and parts[1]["type"] == "audio" and parts[1]["digest"].startswith("sha256:")
    assert "base64" not in json.dumps(call)


def test_truncated_answers_are_counted_in_metrics(motor_dir: Path, tmp_path: Path) -> None:
    cfg = ServerConfig(answer=f"{__name__}:schema_answer", finish_reason="length")
    with FakeOpenAIServer(cfg) as srv:
        m, _ = _run(["--task", "motor", "--model", "fake-model", "--base-url", srv.base_url,
                     "--data", str(motor_dir), "-S", "frames=0"], tmp_path)
    assert m["model_calls"]["truncated"] == 6 and m["model_calls"]["calls"] == 6


def test_epochs_report_each_metric_per_epoch_by_hand(motor_dir: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(ServerConfig(answer=f"{__name__}:schema_answer")) as srv:
        m, _ = _run(["--task", "motor", "--model", "fake-model", "--base-url", srv.base_url, "--data", str(motor_dir),
                     "-S", "frames=0", "-S", "epochs=3", "-S", "temperature=0.7", "--seed", "5"], tmp_path)
        bodies = srv.bodies()
    assert sorted(b["seed"] for b in bodies) == sorted([5, 6, 7] * 6)
    vocab = json.loads((motor_dir / "labels.json").read_text())
    labels = {h: list(v["labels"] if isinstance(v, dict) else v) for h, v in vocab.items()}
    with (motor_dir / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    report = m["report"]["epochs"]
    assert report["epochs"] == 3 and report["samples"] == 6
    for head in HEADS:
        # the fake answers labels[seed % n] for every clip: accuracy of epoch e = share of clips with that target
        by_hand = [sum(r[head] == labels[head][s % len(labels[head])] for r in rows) / len(rows) for s in (5, 6, 7)]
        got = report["metrics"][f"accuracy_{head}"]
        assert got["per_epoch"] == pytest.approx(by_hand)
        assert got["mean"] == pytest.approx(sum(by_hand) / 3)
        mean = sum(by_hand) / 3
        assert got["std"] == pytest.approx((sum((v - mean) ** 2 for v in by_hand) / 2) ** 0.5)
        assert m["metrics"][f"accuracy_{head}"]["value"] == pytest.approx(by_hand[0])  # epoch 0 is the prediction
    assert all(len(s["info"]["epochs"]) == 3 for s in m["samples"])


def test_mas_vote_samples_at_its_temperature_with_a_seed_per_agent_and_the_definitions(motor_dir: Path,
                                                                                       tmp_path: Path) -> None:
    with FakeOpenAIServer(ServerConfig(answer=f"{__name__}:schema_answer")) as srv:
        m, run_dir = _run(["--task", "motor", "--solver", "mas-vote", "--model", "fake-model", "--base-url",
                           srv.base_url, "--data", str(motor_dir), "-S", "frames=0", "--limit", "1"], tmp_path)
        bodies = srv.bodies()
    assert len(bodies) == 3 and {b["temperature"] for b in bodies} == {0.7}
    assert sorted(b["seed"] for b in bodies) == [0, 1, 2]
    text = json.dumps(bodies[0]["messages"])
    assert "students discuss the task" in text and "deciding goals, steps or who does what" in text
    assert sorted(c["role"] for c in transcripts(run_dir)) == ["agent_0", "agent_1", "agent_2"]


def hedging(prompt: str, body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"] if isinstance(body["messages"][0]["content"], str) else ""
    if "rubric label-extraction" in system:
        labels = prompt.split("from this list: ", 1)[1].split(".\n", 1)[0].split(", ")
        return json.dumps({"label": labels[0], "reason": "leans that way"})
    return "Hmm, hard to say from this clip."


def test_judges_on_their_own_endpoints_and_a_judge_that_404s(motor_dir: Path, tmp_path: Path) -> None:
    from harness import views

    def server(model: str) -> FakeOpenAIServer:
        return FakeOpenAIServer(ServerConfig(answer=f"{__name__}:hedging", served_models=(model,),
                                             error_style="vllm"))

    with server("fake-model") as solver, server("judge-a") as a, server("judge-b") as b:
        m, _ = _run(["--task", "motor", "--model", "fake-model", "--base-url", solver.base_url, "--data",
                     str(motor_dir), "-S", "frames=0", "--judge", f"judge-a@{a.base_url}",
                     "--judge", f"judge-b@{b.base_url}"], tmp_path / "ok")
        # 6 clips x 3 heads per judge; identical judge requests (same answer, head) may come from the cache
        assert 3 <= a.stats()["completed"] <= 18 and 3 <= b.stats()["completed"] <= 18
        # the README's old trap: the second judge on an endpoint that serves another model
        with views.console.capture() as captured:
            bad, bad_dir = _run(["--task", "motor", "--model", "fake-model", "--base-url", solver.base_url, "--data",
                                 str(motor_dir), "-S", "frames=0", "--judge", f"judge-a@{a.base_url}",
                                 "--judge", f"judge-b@{a.base_url}", "--no-cache"], tmp_path / "bad")
    # the terminal says so where the run ends; no sample errored, but judge-a alone is not the panel: every
    # head that needed the judges is invalid (no quorum), never judge-a's label passed off as the panel's
    assert "errored: 0" in captured.get()
    judged = [h for s in bad["samples"] for h, j in s["info"].get("judge", {}).items()]
    assert judged and all(s["prediction"][h] is None for s in bad["samples"] for h in s["info"].get("judge", {}))
    assert all(j["no_quorum"] == "1 of 2 judges failed (judge-b)" for s in bad["samples"]
               for j in s["info"]["judge"].values())
    assert all(s["prediction"][h] is not None for s in m["samples"] for h in s["info"].get("judge", {}))
    assert "18 judge call(s) failed; every call of judge/judge-b failed" in captured.get()
    with views.console.capture() as shown:
        assert main(["show", bad_dir.name, "--out", str(tmp_path / "bad")]) == 0
    assert "judge error 18" in shown.get() and "every call of judge/judge-b failed" in shown.get()
    calls = m["model_calls"]
    assert calls["by_role"]["judge/judge-a"]["calls"] == calls["by_role"]["judge/judge-b"]["calls"] == 18
    assert calls["judge_error"] == 0 and m["report"]["judge_agreement"]["items"] == 18
    assert bad["model_calls"]["judge_error"] == 18
    assert bad["model_calls"]["judges_failed_every_call"] == ["judge/judge-b"]
    errors = bad["samples"][0]["info"]["judge"]["behavior"]["errors"]
    assert "HTTP 404" in errors[0] and "The model `judge-b` does not exist." in errors[0]


def test_one_judge_model_on_two_endpoints_is_two_judges_in_the_accounting(motor_dir: Path, tmp_path: Path) -> None:
    cfg = ServerConfig(answer=f"{__name__}:hedging", served_models=("fake-model", "judge-x"))
    with FakeOpenAIServer(cfg) as solver, FakeOpenAIServer(cfg) as a, FakeOpenAIServer(cfg) as b:
        m, _ = _run(["--task", "motor", "--model", "fake-model", "--base-url", solver.base_url, "--data",
                     str(motor_dir), "-S", "frames=0", "--judge", f"judge-x@{a.base_url}",
                     "--judge", f"judge-x@{b.base_url}"], tmp_path)
    names = [f"judge-x@{a.base_url}", f"judge-x@{b.base_url}"]
    by_role = m["model_calls"]["by_role"]
    assert by_role[f"judge/{names[0]}"]["calls"] == by_role[f"judge/{names[1]}"]["calls"] == 18
    assert "judge/judge-x" not in by_role
    assert all(j["judges"] == names for s in m["samples"] for j in s["info"]["judge"].values())


def hedging_by_prompt(prompt: str, body: dict[str, Any]) -> str:
    """The solver hedges in words that depend on the prompt; judge-a and judge-b read a label by two rules."""
    system = body["messages"][0]["content"] if isinstance(body["messages"][0]["content"], str) else ""
    if "rubric label-extraction" in system:
        labels = prompt.split("from this list: ", 1)[1].split(".\n", 1)[0].split(", ")
        h = int(hashlib.sha1(prompt.split("-----\n")[1].encode()).hexdigest(), 16)
        pick = h % 2 if body["model"] == "judge-a" else int(h % 3 == 0)
        return json.dumps({"label": labels[pick], "reason": "leans that way"})
    return f"Hard to say ({hashlib.sha1(prompt.encode()).hexdigest()[:6]})."


def test_sarcasm_reports_the_judges_kappa_like_motor(tmp_path: Path) -> None:
    """The README says sarcasm's `mllm` works as motor's: with two judges on their own endpoints the report
    holds their agreement, Cohen's kappa equal to scikit-learn's on the per-sample labels."""
    from sklearn.metrics import cohen_kappa_score

    from tasks.sarcasm import bundled

    def server(model: str) -> FakeOpenAIServer:
        return FakeOpenAIServer(ServerConfig(answer=f"{__name__}:hedging_by_prompt", served_models=(model,)))

    with server("fake-model") as solver, server("judge-a") as a, server("judge-b") as b:
        m, _ = _run(["--task", "sarcasm", "--model", "fake-model", "--base-url", solver.base_url, "--data",
                     str(bundled.BUNDLED_DIR), "--limit", "4", "-S", "frames=0", "--judge", f"judge-a@{a.base_url}",
                     "--judge", f"judge-b@{b.base_url}"], tmp_path)
    labels = [s["info"]["judge"]["labels"] for s in m["samples"]]
    assert m["n_errors"] == 0 and len(labels) == 20 and len({tuple(x) for x in labels}) > 1
    agreement = m["report"]["judge_agreement"]
    assert agreement["items"] == 20
    assert agreement["cohen_kappa"] == pytest.approx(cohen_kappa_score([x[0] for x in labels], [x[1] for x in labels]))


def test_schema_fallback_and_a_refused_request_are_counted_and_the_rest_keep_the_schema(motor_dir: Path,
                                                                                        tmp_path: Path) -> None:
    # one clip's transcript says "annoying": that request gets a 400 that is not about the schema
    cfg = ServerConfig(answer=f"{__name__}:schema_answer", reject_marker="annoying", error_style="vllm")
    with FakeOpenAIServer(cfg) as srv:
        m, _ = _run(["--task", "motor", "--model", "fake-model", "--base-url", srv.base_url,
                     "--data", str(motor_dir), "-S", "frames=0", "--max-retries", "0"], tmp_path / "refused")
        bodies = srv.bodies()
    assert m["n_errors"] == 1 and "At most 1 image(s)" in m["errors"][0]
    assert all("response_format" in b for b in bodies) and len(bodies) == 6
    assert m["model_calls"]["request_error"] == 1 and m["model_calls"]["schema_fallback"] == 0
    # a server without structured outputs: every request falls back, each one recorded
    with FakeOpenAIServer(ServerConfig(reject_json_schema=True)) as srv:
        m, _ = _run(["--task", "motor", "--model", "fake-model", "--base-url", srv.base_url,
                     "--data", str(motor_dir), "-S", "frames=0"], tmp_path / "fallback")
    assert m["model_calls"]["schema_fallback"] == 6 and m["model_calls"]["unparseable"] == 6
    assert all(s["info"]["model_calls"]["mllm"]["schema_fallback"] == 1 for s in m["samples"])


def test_a_list_of_base_urls_spreads_a_run_over_replicas(motor_dir: Path, tmp_path: Path) -> None:
    cfg = ServerConfig(answer=f"{__name__}:schema_answer", latency_s=0.05)
    with FakeOpenAIServer(cfg) as a, FakeOpenAIServer(cfg) as b:
        m, run_dir = _run(["--task", "motor", "--model", "fake-model", "--base-url", f"{a.base_url},{b.base_url}",
                           "--data", str(motor_dir), "-S", "frames=0", "--concurrency", "2"], tmp_path)
        sa, sb = a.stats(), b.stats()
    assert m["n_errors"] == 0 and sa["completed"] + sb["completed"] == 6
    assert sa["completed"] >= 2 and sb["completed"] >= 2  # both replicas served
    assert sa["max_in_flight"] <= 2 and sb["max_in_flight"] <= 2  # --concurrency holds per replica
    assert {c["endpoint"] for c in transcripts(run_dir)} == {a.base_url, b.base_url}
