"""`motor`: the manifest/vocabulary layout, the metrics (checked against sklearn and by hand), the
reference baselines and the zero-shot MLLM solver against a scripted backend."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import f1_score

from harness.core import DataError, Record, RunContext, Sample
from harness.models.base import ChatRequest, ChatResponse, ModelBackend
from harness.stats import bootstrap
from tasks.motor import MotorTask
from tasks.motor.baselines import MajoritySolver, RandomSolver, StratifiedSolver
from tasks.motor.data import HEADS
from tasks.motor.fixture import write_fixture
from tasks.motor.llm_solvers import MotorMLLMSolver
from tasks.motor.metrics import INVALID, macro_f1, mean_macro_f1, motor_metrics


@pytest.fixture(scope="module")
def motor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("motor"), 12)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write_rows(path: Path, rows: list[dict[str, str]], fields: list[str] | None = None) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def broken(motor_dir: Path, tmp_path: Path) -> Path:
    """A copy of the fixture's manifest + labels pointing at the fixture's media."""
    rows = _rows(motor_dir / "manifest.csv")
    for row in rows:
        row["video"] = str(motor_dir / row["video"])
        if row["audio"]:
            row["audio"] = str(motor_dir / row["audio"])
        if row["transcript"].endswith(".txt"):
            row["transcript"] = str(motor_dir / row["transcript"])
    _write_rows(tmp_path / "manifest.csv", rows)
    (tmp_path / "labels.json").write_text((motor_dir / "labels.json").read_text())
    return tmp_path


def _load(path: Path) -> list[Sample]:
    task = MotorTask()
    return task.folds(task.resolve_data(path), "zero-shot")[0].test


# -- layout -----------------------------------------------------------------------------------------
def test_fixture_loads_as_one_zero_shot_fold(motor_dir: Path) -> None:
    task = MotorTask()
    folds = task.folds(task.resolve_data(motor_dir), "zero-shot")
    assert [f.name for f in folds] == ["all"] and not folds[0].train
    samples = folds[0].test
    assert len(samples) == 12 and len({s.id for s in samples}) == 12
    first = samples[0]
    assert Path(first.inputs["video"]).is_file() and first.inputs["audio"].endswith("clip000.wav")
    assert "who reads the question" in first.inputs["transcript"]  # read from transcripts/clip000.txt
    assert "make sense" in samples[1].inputs["transcript"]  # inline
    assert set(first.target) == set(HEADS) and set(first.groups) == {"session", "group"}
    assert task.cluster_key == "session" and first.inputs["vocab"]["behavior"][0] == "on-task talk"


def test_data_root_with_a_motor_subfolder_is_found(motor_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "motor").symlink_to(motor_dir)
    assert MotorTask().resolve_data(tmp_path) == tmp_path / "motor"


def test_unknown_label_names_file_row_and_field(broken: Path) -> None:
    rows = _rows(broken / "manifest.csv")
    rows[1]["emotion"] = "ecstatic"
    _write_rows(broken / "manifest.csv", rows)
    with pytest.raises(DataError) as err:
        _load(broken)
    msg = str(err.value)
    assert "manifest.csv: row 3" in msg and "'emotion'" in msg and "ecstatic" in msg


def test_missing_video_names_file_row_and_field(broken: Path) -> None:
    rows = _rows(broken / "manifest.csv")
    rows[4]["video"] = "videos/nope.mp4"
    _write_rows(broken / "manifest.csv", rows)
    with pytest.raises(DataError, match=r"manifest\.csv: row 6: field 'video': file .*nope\.mp4 does not exist"):
        _load(broken)


def test_duplicate_clip_id_names_both_rows(broken: Path) -> None:
    rows = _rows(broken / "manifest.csv")
    rows[5]["clip_id"] = rows[2]["clip_id"]
    _write_rows(broken / "manifest.csv", rows)
    with pytest.raises(DataError, match=r"row 7: field 'clip_id': duplicate id 'clip002' \(first at row 4\)"):
        _load(broken)


def test_missing_column_names_the_header(broken: Path) -> None:
    rows = _rows(broken / "manifest.csv")
    _write_rows(broken / "manifest.csv", rows, [c for c in rows[0] if c != "cognition"])
    with pytest.raises(DataError, match=r"manifest\.csv: row 1 \(header\): missing column\(s\) cognition"):
        _load(broken)


def test_missing_transcript_file_and_empty_field(broken: Path) -> None:
    rows = _rows(broken / "manifest.csv")
    rows[0]["transcript"] = "transcripts/missing.txt"
    _write_rows(broken / "manifest.csv", rows)
    with pytest.raises(DataError, match=r"row 2: field 'transcript': file .*missing\.txt does not exist"):
        _load(broken)
    rows[0]["transcript"], rows[3]["session"] = "", ""
    _write_rows(broken / "manifest.csv", rows)
    with pytest.raises(DataError, match=r"row 5: field 'session' is empty"):
        _load(broken)


def test_jsonl_manifest_rows_are_line_numbers(broken: Path) -> None:
    rows = _rows(broken / "manifest.csv")
    (broken / "manifest.csv").unlink()
    del rows[2]["group"]
    (broken / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"manifest\.jsonl: row 3: missing field\(s\) group"):
        _load(broken)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"behavior": ["a"], "cognition": ["b"]}, "head 'emotion' is missing"),
        ({"behavior": ["a", "a"], "cognition": ["b"], "emotion": ["c"]}, "duplicate label"),
        ({"behavior": {"labels": ["a"], "prior_counts": {"z": 3}}, "cognition": ["b"], "emotion": ["c"]},
         "prior_counts has unknown label 'z'"),
    ],
)
def test_vocabulary_errors_name_the_head(broken: Path, labels: dict[str, Any], message: str) -> None:
    (broken / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(DataError, match=message) as err:
        _load(broken)
    assert "labels.json" in str(err.value)


def test_no_manifest_and_no_labels(tmp_path: Path, broken: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no MOTOR manifest"):
        MotorTask().resolve_data(empty)
    (broken / "labels.json").unlink()
    with pytest.raises(DataError, match=r"labels\.json: label vocabulary file is missing"):
        MotorTask().resolve_data(broken)


# -- metrics ----------------------------------------------------------------------------------------
def _records(task: MotorTask, samples: list[Sample], predictions: list[Any]) -> list[Record]:
    pairs = zip(samples, predictions, strict=True)
    return [Record(s.id, "all", s.target, p, task.score(s, p), s.groups) for s, p in pairs]


def _sample(i: int, behavior: str, vocab: dict[str, list[str]]) -> Sample:
    return Sample(f"c{i}", {"vocab": vocab}, {"behavior": behavior, "cognition": "x", "emotion": "x"}, {"session": "s"})


def test_macro_f1_worked_by_hand_and_by_sklearn() -> None:
    """targets a a b c, predictions a b b <invalid>:
    F1(a) = 2/3 (P 1, R 1/2), F1(b) = 2/3 (P 1/2, R 1), F1(c) = 0 -> macro 4/9; the invalid answer is a miss."""
    vocab = {"behavior": ["a", "b", "c"], "cognition": ["x"], "emotion": ["x"]}
    task = MotorTask()
    samples = [_sample(i, t, vocab) for i, t in enumerate("aabc")]
    preds = [{"behavior": p, "cognition": "x", "emotion": "x"} for p in ("a", "b", "b", None)]
    records = _records(task, samples, preds)
    assert macro_f1(records, "behavior") == pytest.approx(4 / 9)
    sk = f1_score(list("aabc"), ["a", "b", "b", "NONE"], labels=["a", "b", "c"], average="macro")
    assert macro_f1(records, "behavior") == pytest.approx(sk)
    assert mean_macro_f1(records) == pytest.approx((4 / 9 + 1 + 1) / 3)
    assert [r.scores["correct_behavior"] for r in records] == [1.0, 0.0, 1.0, 0.0]
    assert [r.scores["invalid_behavior"] for r in records] == [0.0, 0.0, 0.0, 1.0]


def test_macro_f1_matches_sklearn_on_fixture(motor_dir: Path) -> None:
    task = MotorTask()
    samples = _load(motor_dir)
    vocab = samples[0].inputs["vocab"]
    preds = []
    for i in range(len(samples)):  # a mix of right, wrong, invalid and out-of-vocabulary answers
        p = {h: vocab[h][(i * (k + 2)) % len(vocab[h])] for k, h in enumerate(HEADS)}
        if i % 5 == 0:
            p["cognition"] = None
        if i % 7 == 3:
            p["emotion"] = "bored"  # not in the vocabulary: invalid
        preds.append(p)
    records = _records(task, samples, preds)
    values = {m.name: m.compute(records) for m in motor_metrics()}
    for head in HEADS:
        y_true = [s.target[head] for s in samples]
        y_pred = [p[head] if p[head] in vocab[head] else INVALID for p in preds]
        labels = sorted(set(y_true) | (set(y_pred) - {INVALID}))
        expect = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        assert values[f"macro_f1_{head}"] == pytest.approx(expect)
        hits = sum(t == p for t, p in zip(y_true, y_pred, strict=True))
        assert values[f"accuracy_{head}"] == pytest.approx(hits / 12)
    assert values["mean_macro_f1"] == pytest.approx(sum(values[f"macro_f1_{h}"] for h in HEADS) / 3)
    assert values["invalid_rate_cognition"] == pytest.approx(3 / 12)  # i = 0, 5, 10
    assert values["invalid_rate_emotion"] == pytest.approx(2 / 12)  # i = 3, 10
    assert motor_metrics()[0].name == "mean_macro_f1"


def test_macro_f1_on_a_resample_keeps_every_vocabulary_label(motor_dir: Path) -> None:
    """A resample that lost a label still averages over the whole vocabulary, the lost label scoring 0
    (sklearn with labels=vocabulary), instead of dropping it and scoring higher."""
    task = MotorTask()
    samples = task.folds(motor_dir, "zero-shot")[0].test
    preds = [dict(s.target) for s in samples]
    preds[3]["behavior"] = "on-task talk"  # one miss, so the subset below is not perfect
    records = _records(task, samples, preds)
    metric = next(m for m in task.metrics("zero-shot") if m.name == "macro_f1_behavior")
    subset = [r for r in records if r.target["behavior"] != "off-task"]
    y_true = [r.target["behavior"] for r in subset]
    y_pred = [r.prediction["behavior"] for r in subset]
    assert "off-task" not in y_true + y_pred
    vocab = task.vocabulary["behavior"]
    expect = f1_score(y_true, y_pred, labels=vocab, average="macro", zero_division=0)
    assert metric.compute(subset) == pytest.approx(expect)
    assert metric.compute(subset) < f1_score(y_true, y_pred, average="macro")  # the label-dropping value


def test_bootstrap_ci_of_macro_f1_holds_the_point_value(motor_dir: Path) -> None:
    """The majority baseline on the fixture: with labels dropped per resample the CI was [19.3, 36.5]
    around a point of 19.3; over the fixed vocabulary the point lies inside its CI."""
    task = MotorTask()
    samples = task.folds(motor_dir, "zero-shot")[0].test
    solver = MajoritySolver()
    solver.fit(samples)
    preds = [asyncio.run(solver.solve(s)) for s in samples]
    out = bootstrap(task.metrics("zero-shot"), _records(task, samples, preds), cluster_key=task.cluster_key,
                    n_boot=1000, seed=0)
    for head in HEADS:
        v = out[f"macro_f1_{head}"]
        assert v.ci_low <= v.value <= v.ci_high, head
    v = out["mean_macro_f1"]
    assert v.value == pytest.approx(0.193, abs=1e-3) and v.ci_low <= v.value <= v.ci_high < 0.3


def test_report_has_per_class_f1_confusion_and_invalid_counts(motor_dir: Path) -> None:
    task = MotorTask()
    samples = task.folds(motor_dir, "zero-shot")[0].test  # the report lists the vocabulary's labels in order
    preds: list[Any] = [dict(s.target) for s in samples]
    preds[0] = {**preds[0], "behavior": None}
    preds[1] = "not a dict at all"
    records = _records(task, samples, preds)
    records.append(Record("err", "all", samples[0].target, None, {}, {}, error="boom"))
    report = task.report(records, "zero-shot", motor_dir)
    assert report["invalid_answers"] == {"behavior": 2, "cognition": 1, "emotion": 1}
    assert report["samples_with_any_invalid"] == 2 and report["errored_samples"] == 1
    beh = report["heads"]["behavior"]
    assert beh["labels"] == ["on-task talk", "silent work", "off-task"]
    assert beh["confusion_matrix"]["columns"][-1] == "invalid"
    counts = beh["confusion_matrix"]["counts"]
    assert sum(map(sum, counts)) == 12 and sum(row[-1] for row in counts) == 2
    y_true = [s.target["behavior"] for s in samples]
    y_pred = [INVALID, INVALID, *y_true[2:]]
    expect = f1_score(y_true, y_pred, labels=beh["labels"], average=None)
    assert list(beh["per_class_f1"].values()) == pytest.approx(list(expect))
    json.dumps(report)


# -- baselines --------------------------------------------------------------------------------------
def _solve(solver: Any, samples: list[Sample]) -> list[Any]:
    async def go() -> list[Any]:
        return [await solver.solve(s) for s in samples]

    return asyncio.run(go())


def test_majority_uses_manifest_distribution_or_prior_counts(motor_dir: Path, broken: Path) -> None:
    samples = _load(motor_dir)
    out = _solve(MajoritySolver(), samples)
    assert all(o == {"behavior": "on-task talk", "cognition": "planning", "emotion": "positive"} for o in out)
    labels = json.loads((broken / "labels.json").read_text())
    labels["emotion"]["prior_counts"] = {"confused": 9, "positive": 2}
    (broken / "labels.json").write_text(json.dumps(labels))
    assert _solve(MajoritySolver(), _load(broken)[:1])[0]["emotion"] == "confused"


def test_random_and_stratified_are_seeded_and_order_free(motor_dir: Path) -> None:
    samples = _load(motor_dir)
    task = MotorTask()
    for cls in (RandomSolver, StratifiedSolver):
        a = _solve(cls.create(RunContext(seed=1), task), samples)
        b = _solve(cls.create(RunContext(seed=1), task), samples[::-1])[::-1]
        c = _solve(cls.create(RunContext(seed=2), task), samples)
        assert a == b and a != c
        assert all(o[h] in samples[0].inputs["vocab"][h] for o in a for h in HEADS)


# -- zero-shot MLLM -------------------------------------------------------------------------------
class FixedBackend(ModelBackend):
    def __init__(self, text: str) -> None:
        self.model, self.text, self.requests = "fake", text, []

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        return ChatResponse(self.text)


def _mllm(text: str, frames: int = 4) -> tuple[MotorMLLMSolver, FixedBackend]:
    backend = FixedBackend(text)
    return MotorMLLMSolver(backend, frames=frames, seed=0), backend


def test_mllm_structured_answer_and_request(motor_dir: Path) -> None:
    sample = _load(motor_dir)[0]
    solver, backend = _mllm('{"behavior": "silent work", "cognition": "monitoring", "emotion": "neutral"}')
    out = _solve(solver, [sample])[0]
    assert out.prediction == {"behavior": "silent work", "cognition": "monitoring", "emotion": "neutral"}
    assert out.info["parsed_by"] == "schema" and "invalid" not in out.info
    req = backend.requests[0]
    assert req.temperature == 0.0 and req.seed == 0
    assert req.json_schema["properties"]["emotion"]["enum"] == ["positive", "neutral", "confused", "frustrated"]
    video = [p for p in req.messages[1].content if p.type == "video"]
    assert video[0].num_frames == 4 and video[0].path == sample.inputs["video"]
    assert "who reads the question" in req.messages[1].content[-1].text
    assert "checking progress or understanding" in req.messages[0].content[0].text  # definitions in the prompt


def test_mllm_free_text_fallback_and_invalid_heads(motor_dir: Path) -> None:
    sample = _load(motor_dir)[0]
    solver, _ = _mllm("Behavior: Silent work.\nCognition: planning\nEmotion: happy or sad?", frames=0)
    out = _solve(solver, [sample])[0]
    assert out.prediction == {"behavior": "silent work", "cognition": "planning", "emotion": None}
    assert out.info["parsed_by"] == "text" and out.info["invalid_heads"] == ["emotion"]
    solver, backend = _mllm("lorem ipsum dolor", frames=0)
    out = _solve(solver, [sample])[0]
    assert out.prediction == dict.fromkeys(HEADS) and out.info["invalid"] is True
    assert out.info["raw"] == "lorem ipsum dolor"
    assert not [p for p in backend.requests[0].messages[1].content if p.type == "video"]
    scores = MotorTask().score(sample, out.prediction)
    assert scores["correct_behavior"] == 0.0 and scores["invalid_behavior"] == 1.0


class SchemaBackend(ModelBackend):
    """Answers every request with a valid instance of its schema (first enum value); keeps the requests."""

    def __init__(self) -> None:
        self.model, self.requests = "fake", []

    async def chat(self, request: ChatRequest) -> ChatResponse:
        from tests.servers.fake_openai import schema_instance

        self.requests.append(request)
        return ChatResponse(json.dumps(schema_instance(request.json_schema or {})))


def test_compared_solvers_get_the_same_definitions_and_only_the_data_s_label_names(motor_dir: Path) -> None:
    """mllm, motor-mas and mas-vote are compared in the paper: each must show the labels and definitions of
    the data's vocabulary, in the same words, and no label name written into the code (the fixture's)."""
    from tasks.motor.fixture import VOCAB
    from tasks.motor.llm_solvers import MotorMASSolver, VoteSolver

    vocab = {"behavior": ["alpha talk", "beta work"], "cognition": ["gamma", "delta"], "emotion": ["epsilon", "zeta"]}
    definitions = {h: {lab: f"what {lab} means" for lab in labels} for h, labels in vocab.items()}
    first = _load(motor_dir)[0]
    sample = Sample(first.id, {**first.inputs, "vocab": vocab, "definitions": definitions,
                               "transcript": "A: hello. B: hi."}, first.target, first.groups)
    lines = {f"- {lab}: what {lab} means" for labels in vocab.values() for lab in labels}
    for cls in (MotorMLLMSolver, MotorMASSolver, VoteSolver):
        backend = SchemaBackend()
        (out,) = _solve(cls(backend, frames=0, seed=0), [sample])
        assert out.prediction == {h: labels[0] for h, labels in vocab.items()}, cls.name
        text = "\n".join(p.text or "" for r in backend.requests for m in r.messages for p in m.content).lower()
        assert {line for line in lines if line in text} == lines, cls.name
        leaked = [lab for labels in VOCAB.values() for lab in labels if lab in text]
        assert leaked == [], f"{cls.name} prompts name labels that are not in the data: {leaked}"
