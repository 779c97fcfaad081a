"""CoOp prompt learner (vision_models.clip.coop) and pad_il's `clip-prompt` solver on the tiny random CLIP:
the spliced-context text path against open_clip's own encode_text, frozen encoders, the loss going down,
step-by-step fine-tuning, cached frame features, scores recomputed independently, and a CLI `il` run."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

pytest.importorskip("open_clip")
pytest.importorskip("cv2")
pytest.importorskip("av")

from harness.core import RunContext  # noqa: E402
from harness.registry import make_solver  # noqa: E402
from tasks.pad_il import PadIlTask  # noqa: E402
from tasks.pad_il.synthetic import write_casia, write_msu  # noqa: E402

TINY = {"model": "tiny-random-clip", "pretrained": "none", "device": "cpu", "n_frames": 4}


def _features(n: int = 48, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, (x[:, 0] > 0).astype(int)


def test_context_init_reproduces_encode_text_and_training_moves_only_the_context():
    import open_clip
    import torch

    from vision_models.clip import ClipModel
    from vision_models.clip.coop import PromptLearner

    clip = ClipModel.load("tiny-random-clip", "none", "cpu")
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    learner = PromptLearner(clip, ["spoof face", "live face"], ctx_init="a photo of a")
    assert learner.n_ctx == 4
    # independent: open_clip's own text path on the literal prompts
    tok = open_clip.get_tokenizer("tiny-random-clip")
    with torch.no_grad():
        ref = clip.model.encode_text(tok(["a photo of a spoof face.", "a photo of a live face."]))
        ref = (ref / ref.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(learner.text_features(), ref, atol=1e-5)
    x, y = _features()
    # the loss is the cross-entropy of logit_scale * x . text^T, recomputed here with numpy
    logits = clip.logit_scale * x @ ref.T
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1,
                                                                                                            keepdims=True)
    assert learner.loss(x, y) == pytest.approx(-logp[np.arange(len(y)), y].mean(), rel=1e-4)
    start = learner.ctx.detach().clone()
    history = learner.train(x, y, epochs=15, lr=0.05, batch_size=16)
    assert history[-1] < history[0] and learner.loss(x, y) < -logp[np.arange(len(y)), y].mean()
    assert not torch.equal(start, learner.ctx.detach())
    after = clip.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # both encoders frozen
    rand = PromptLearner(clip, ["spoof face", "live face"], ctx_init="", n_ctx=3, seed=1)
    assert rand.n_ctx == 3 and rand.tokens.shape == learner.tokens.shape
    assert np.abs(rand.text_features() - ref).max() > 1e-3


def _solver(**extra):
    return make_solver(PadIlTask(), "clip-prompt", RunContext(), {**TINY, "epochs": 3, "lr": 0.01, **extra})


def test_clip_prompt_fine_tunes_step_by_step_and_scores_are_live_minus_spoof_logits(tmp_path):
    from harness.media import sample_frames

    write_casia(tmp_path / "C")
    write_msu(tmp_path / "M")
    task = PadIlTask()
    folds = task.folds(tmp_path, "il")
    solver = _solver()
    solver.fit(folds[0].train)
    ctx1 = solver.learner.ctx.detach().clone()
    calls = []
    encode = solver.clip.encode_images
    solver.clip.encode_images = lambda *a, **k: (calls.append(len(a[0])), encode(*a, **k))[1]
    try:
        outs = asyncio.run(solver.solve_batch(folds[0].test))
        n_calls = len(calls)
        again = asyncio.run(solver.solve_batch(folds[0].test))
        assert len(calls) == n_calls  # frame features cached: no second forward pass
    finally:
        solver.clip.encode_images = encode
    assert [o["score"] for o in outs] == [o["score"] for o in again]
    # independent recomputation of one video's score from its frames
    s = folds[0].test[0]
    frames = [np.asarray(f.convert("RGB")) for f in sample_frames(__import__("pathlib").Path(s.inputs["video"]), 4)]
    feats = solver.clip.encode_images(frames)
    text = solver.learner.text_features()
    expected = np.mean(solver.clip.logit_scale * (feats @ text[1] - feats @ text[0]))
    assert outs[0]["score"] == pytest.approx(float(expected), rel=1e-4, abs=1e-4)
    # step 2 continues from step 1's context (same learner, one more step), unlike a fresh solver on step 2
    learner = solver.learner
    solver.fit(folds[1].train)
    assert solver.learner is learner and learner.steps == 2 and len(solver.history) == 2
    assert not np.allclose(ctx1.numpy(), learner.ctx.detach().numpy())
    fresh = _solver()
    fresh.fit(folds[1].train)
    assert not np.allclose(fresh.learner.ctx.detach().numpy(), learner.ctx.detach().numpy())
    outs = asyncio.run(solver.solve_batch(folds[1].test))
    assert all(math.isfinite(o["score"]) and len(o["frame_scores"]) == 4 for o in outs)
    # options enter the identity; unknown options are refused
    assert _solver().identity()["prompts"] != _solver(ctx_init="a face").identity()["prompts"]
    with pytest.raises(Exception, match="ctx_init"):
        _solver(context="x")


def test_clip_prompt_il_run_from_the_cli(tmp_path):
    cli = pytest.importorskip("harness.cli")
    write_casia(tmp_path / "pad" / "C")
    write_msu(tmp_path / "pad" / "M")
    args = ["run", "--task", "pad_il", "--protocol", "il", "--solver", "clip-prompt", "--data", str(tmp_path / "pad"),
            "--out", str(tmp_path / "runs"), "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress",
            "--bootstrap", "20"]
    for key, value in {**TINY, "epochs": 2}.items():
        args += ["-S", f"{key}={value}"]
    assert cli.main(args) == 0
    (run_dir,) = (tmp_path / "runs").glob("pad_il-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_errors"] == 0
    assert metrics["report"]["hter"]["domains"] == ["M", "C"]
    assert metrics["report"]["hter_unseen"]["steps"] == ["1:M"]
    assert {"hter", "auc", "bwt_hter", "hter_unseen"} <= set(metrics["metrics"])


def _learns_on(device: str, tmp_path) -> None:
    write_casia(tmp_path / "C")
    write_msu(tmp_path / "M")
    folds = PadIlTask().folds(tmp_path, "il")
    solver = _solver(device=device, epochs=20, balanced=False)
    for fold in folds:
        x, y = solver.train_matrix(fold.train)
        before = solver._learner().loss(x, y)
        solver.fit(fold.train)
        assert solver.learner.loss(x, y) < before  # the step's train loss goes down
        outs = asyncio.run(solver.solve_batch(fold.test))
        assert all(math.isfinite(o["score"]) for o in outs)
    assert solver.learner.ctx.device.type == device and solver.clip.device == device


def test_clip_prompt_lowers_each_steps_train_loss_on_cpu(tmp_path):
    _learns_on("cpu", tmp_path)


@pytest.mark.gpu
def test_clip_prompt_on_cuda(tmp_path):
    cpu, gpu = _solver(), _solver(device="cuda")
    np.testing.assert_allclose(gpu._learner().text_features(), cpu._learner().text_features(), atol=1e-4)
    _learns_on("cuda", tmp_path)
