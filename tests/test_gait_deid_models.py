"""gait_deid: the OpenGait recogniser wrapper on a tiny random model (CPU; a gpu-marked copy on CUDA), the
restricted .pkl reader, OpenGait's part-averaged distance vs scipy, the quality scores vs scikit-image,
the batched (diffusion) protection plug-in, and the partial-copy warning."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import textwrap

import numpy as np
import pytest

pytest.importorskip("cv2")

from tasks.gait_deid.synthetic import write_casia_b  # noqa: E402

TINY_MODEL = '''
import torch
import torch.nn as nn


class TinyGait(nn.Module):
    """OpenGait's model interface: build_network(model_cfg); forward((ipts, labs, typs, vies, seqL))."""

    def build_network(self, model_cfg):
        self.parts = model_cfg["parts"]
        self.conv = nn.Conv2d(1, model_cfg["channels"], 3, padding=1)

    def forward(self, inputs):
        ipts, labs, _, _, seqL = inputs
        sils = ipts[0]  # [1, frames of all sequences, 64, 44]
        x = torch.relu(self.conv(sils[0].unsqueeze(1)))  # [frames, C, 64, 44]
        pooled = torch.stack([t.max(0)[0] for t in x.split(seqL[0].tolist(), 0)])  # set pooling per sequence
        b, c, h, w = pooled.shape
        emb = pooled.reshape(b, c, self.parts, (h // self.parts) * w).mean(-1)  # [b, C, parts]
        return {"inference_feat": {"embeddings": emb}}
'''


@pytest.fixture(scope="module")
def opengait_tree(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("yaml")
    root = tmp_path_factory.mktemp("OpenGait")
    models = root / "opengait" / "modeling" / "models"
    models.mkdir(parents=True)
    (root / "opengait" / "modeling" / "__init__.py").write_text("")
    (models / "__init__.py").write_text(TINY_MODEL)
    cfg = root / "configs" / "tiny" / "tiny_casiab.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(textwrap.dedent("""\
        data_cfg:
          dataset_name: CASIA-B
        evaluator_cfg:
          restore_ckpt_strict: true
        model_cfg:
          model: TinyGait
          channels: 8
          parts: 4
        """))
    import importlib.util

    spec = importlib.util.spec_from_file_location("_tiny_gait_for_ckpt", models / "__init__.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    net = mod.TinyGait()
    net.build_network({"channels": 8, "parts": 4})
    ckpt = root / "output" / "TinyGait-00001.pt"
    ckpt.parent.mkdir()
    from collections import Counter

    torch.save({"model": net.state_dict(), "iteration": 1,
                "scheduler": {"milestones": Counter({10: 1})}}, ckpt)  # OpenGait saves MultiStepLR state
    # a 3-channel copy stands in for ScoNet: its embeddings are [n, 3 classes, parts] logits
    cfg3 = cfg.with_name("tiny_sconet.yaml")
    cfg3.write_text(cfg.read_text().replace("channels: 8", "channels: 3"))
    net3 = mod.TinyGait()
    net3.build_network({"channels": 3, "parts": 4})
    torch.save({"model": net3.state_dict()}, ckpt.with_name("TinyScoNet.pt"))
    return cfg, ckpt


def _seqs(n=3):
    from tasks.gait_deid.synthetic import silhouette
    from vision_models.gait import pretreat_sequence

    return [pretreat_sequence([silhouette(75 + i, "nm-05", "090", t, 5 + i) for t in range(5 + i)])
            for i in range(n)]


def test_opengait_weights_missing_is_a_clear_error(tmp_path, opengait_tree):
    from vision_models.gait.opengait import OpenGaitRecognizer, WeightsMissing, parse_spec

    cfg, _ = opengait_tree
    with pytest.raises(WeightsMissing, match="checkpoint not found.*--role recognizer=opengait"):
        OpenGaitRecognizer(cfg, tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="expected opengait:CONFIG"):
        parse_spec("opengait:only-a-config.yaml")
    assert parse_spec("opengait:/a/b.yaml:/c/d.pt") == (type(cfg)("/a/b.yaml"), type(cfg)("/c/d.pt"))


def test_an_opengait_config_that_is_not_yaml_names_the_file(tmp_path):
    pytest.importorskip("yaml")
    from vision_models.gait.opengait import OpenGaitRecognizer

    cfg, ckpt = tmp_path / "broken.yaml", tmp_path / "w.pt"
    cfg.write_text("model_cfg:\n  model: [GaitBase\n")  # an unclosed list
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError, match="broken.yaml: not valid YAML"):
        OpenGaitRecognizer(cfg, ckpt, device="cpu")
    cfg.write_bytes(b"model_cfg: \xff\n")
    with pytest.raises(ValueError, match="broken.yaml: not valid YAML"):
        OpenGaitRecognizer(cfg, ckpt, device="cpu")


def _packed_equals_one_by_one(cfg, ckpt, device):
    from vision_models.gait.opengait import OpenGaitRecognizer

    rec = OpenGaitRecognizer(cfg, ckpt, device=device)
    seqs = _seqs(3)
    packed = rec.embed(seqs)
    assert packed.shape == (3, 8 * 4) and rec.parts == 4
    one = np.concatenate([rec.embed([s]) for s in seqs])
    # packing along time with seqL keeps every sequence's set pooling to its own frames
    np.testing.assert_allclose(packed, one, rtol=1e-4, atol=1e-5)
    assert not np.allclose(packed[0], packed[1])


def test_opengait_wrapper_packs_sequences_like_one_at_a_time_on_cpu(opengait_tree):
    _packed_equals_one_by_one(*opengait_tree, device="cpu")


@pytest.mark.gpu
def test_opengait_wrapper_on_cuda(opengait_tree):
    _packed_equals_one_by_one(*opengait_tree, device="cuda:0")


def test_opengait_role_batches_concurrent_sequences(opengait_tree):
    from tasks.gait_deid.scoring import OpenGaitRole

    cfg, ckpt = opengait_tree
    role = OpenGaitRole(f"opengait:{cfg}:{ckpt}", max_batch=8)
    seqs = _seqs(4)

    async def go():
        return await asyncio.gather(*(role.batcher.submit(s) for s in seqs))

    out = np.stack(asyncio.run(go()))
    assert max(role.batcher.batch_sizes) > 1
    np.testing.assert_allclose(out, role.embed(seqs), rtol=1e-4, atol=1e-5)
    assert "TinyGait" in role.fit_on and role.parts == 4


def test_cli_run_with_the_opengait_role(opengait_tree, tmp_path):
    cli = pytest.importorskip("harness.cli")
    cfg, ckpt = opengait_tree
    write_casia_b(tmp_path / "casia", [1, 2, 75, 76, 77], views=("054", "090"), n_frames=4)
    rc = cli.main(["run", "--task", "gait_deid", "--solver", "none", "--data", str(tmp_path / "casia"),
                   "--out", str(tmp_path / "runs"), "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress",
                   "--bootstrap", "10", "--role", f"recognizer=opengait:{cfg}:{ckpt}"])
    assert rc in (0, None)
    (run_dir,) = (tmp_path / "runs").glob("gait_deid-none-*")
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["n_errors"] == 0 and "TinyGait" in m["report"]["recognizer_fit"]
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(x["scores"]["embedding_parts"] == 4 and isinstance(x["scores"]["embedding"], str) for x in lines)
    assert 0.0 <= m["metrics"]["rank1_mean"]["value"] <= 1.0


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_pkl_reader_refuses_anything_but_arrays(tmp_path):
    from harness.core import DataError
    from tasks.gait_deid.loaders import load_sequence

    good = tmp_path / "good.pkl"
    arr = np.random.default_rng(0).integers(0, 2, (3, 64, 64)).astype(np.uint8) * 255
    for proto in (2, 4, 5):
        good.write_bytes(pickle.dumps(arr, protocol=proto))
        np.testing.assert_array_equal(load_sequence(str(good), "pkl"), arr)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(DataError, match=r"bad\.pkl.*refusing to load posix\.getcwd|bad\.pkl.*refusing"):
        load_sequence(str(bad), "pkl")
    flat = tmp_path / "flat.pkl"
    flat.write_bytes(pickle.dumps(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match="flat.pkl"):
        load_sequence(str(flat), "pkl")
    from vision_models.gait import load_pkl

    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pkl: not a pickled numpy array"):  # as the docstring says
        load_pkl(empty)


def test_part_distance_is_openGaits_part_averaged_euclidean():
    from scipy.spatial.distance import cdist

    from tasks.gait_deid.evaluation import part_distance

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 6 * 3)), rng.normal(size=(4, 6 * 3))
    np.testing.assert_allclose(part_distance(x, y, 1), cdist(x, y))
    xr, yr = x.reshape(5, 6, 3), y.reshape(4, 6, 3)  # [n, c, p]
    expected = np.mean([cdist(xr[:, :, i], yr[:, :, i]) for i in range(3)], axis=0)
    np.testing.assert_allclose(part_distance(x, y, 3), expected)
    assert not np.allclose(part_distance(x, y, 3), cdist(x, y))


def test_quality_scores_against_scikit_image_and_by_hand():
    from skimage.metrics import structural_similarity

    from tasks.gait_deid.scoring import iou_consecutive, paired_psnr, paired_ssim, quality

    rng = np.random.default_rng(2)
    orig = (rng.random((4, 64, 64)) > 0.5).astype(np.uint8) * 255
    prot = orig[[2, 0]]  # frames 2 and 0 kept, reordered
    assert paired_ssim(orig, prot, [2, 0]) == pytest.approx(1.0)
    by_position = np.mean([structural_similarity(orig[i], prot[i], data_range=255) for i in range(2)])
    assert paired_ssim(orig, prot) == pytest.approx(by_position) and by_position < 0.5
    # IoU by hand: a 2x2 block moving one column: |A & B| = 2, |A | B| = 6 -> 1/3; identical -> 1
    a = np.zeros((3, 64, 64), np.uint8)
    a[0, 10:12, 10:12] = a[1, 10:12, 11:13] = a[2, 10:12, 11:13] = 255
    assert iou_consecutive(a) == pytest.approx((1 / 3 + 1) / 2)
    assert np.isnan(iou_consecutive(a[:1]))
    q = quality(orig, prot, {"frame_index": [2, 0]})
    assert q["ssim"] == pytest.approx(1.0) and q["n_frames_protected"] == 2 and q["psnr"] == 100.0
    from skimage.metrics import peak_signal_noise_ratio

    noisy = orig.copy()
    noisy[:, :8] = 255 - noisy[:, :8]
    assert paired_psnr(orig, noisy) == pytest.approx(peak_signal_noise_ratio(orig, noisy, data_range=255))


def test_batched_protection_plugin(tmp_path):
    from harness.artifacts import ArtifactStore
    from harness.core import Sample
    from tasks.gait_deid import GaitDeidTask
    from tasks.gait_deid.protections import BatchedProtection

    write_casia_b(tmp_path / "casia", [75, 76, 77], views=("090",), condseqs=("nm-01", "nm-05", "bg-01"),
                  n_frames=4)
    with pytest.warns(UserWarning, match="partial CASIA-B copy: 47 of the 50 test subjects missing"):
        (fold,) = GaitDeidTask().folds(tmp_path / "casia", "casia-b")
    calls = []

    class Inverter(BatchedProtection):
        name = "test-inverter"

        def load_model(self):
            self.loaded = True

        def protect_batch(self, seqs, samples, targets, rngs):
            calls.append(len(seqs))
            return [255 - s for s in seqs]

    solver = Inverter(seed=0)
    solver.artifacts = ArtifactStore(tmp_path / "artifacts")
    samples: list[Sample] = [*fold.splits["gallery"][:1], *fold.test]
    out = asyncio.run(solver.solve_batch(samples))
    assert out[0] == {"protected": False} and calls == [len(fold.test)]
    for s, o in zip(samples[1:], out[1:], strict=True):
        seq = solver.artifacts.load_array(o.prediction["sequence"])
        from tasks.gait_deid.loaders import load_sequence

        np.testing.assert_array_equal(seq, 255 - load_sequence(s.inputs["source"], s.inputs["layout"]))
        assert o.prediction["target_subject"] != s.groups["subject"]


def test_scoliosis1k_utility_matches_sklearn_on_protected_sequences(tmp_path):
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    from tasks.gait_deid import GaitDeidTask
    from tasks.gait_deid.synthetic import write_scoliosis1k

    cli = pytest.importorskip("harness.cli")
    write_scoliosis1k(tmp_path / "scol", n_subjects=12, views=("090",), n_frames=5)
    assert GaitDeidTask().detect_protocol(tmp_path / "scol") == "scoliosis1k"
    for solver in ("none", "blur", "target-swap"):
        rc = cli.main(["run", "--task", "gait_deid", "--solver", solver, "--data", str(tmp_path / "scol"),
                       "--out", str(tmp_path / "runs"), "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress",
                       "--bootstrap", "10"])
        assert rc in (0, None)
        (run_dir,) = (tmp_path / "runs").glob(f"gait_deid-{solver}-*")
        m = json.loads((run_dir / "metrics.json").read_text())
        assert m["n_errors"] == 0 and m["n_samples"] == 6  # the TEST_SET: 6 of 12 subjects, one view
        lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
        true = [x["target"]["label"] for x in lines]
        pred = [x["scores"]["screen"] for x in lines]
        labels = ["negative", "neutral", "positive"]
        p, r, f, _ = precision_recall_fscore_support(true, pred, labels=labels, average="macro", zero_division=0)
        got = m["metrics"]
        assert got["scoliosis_accuracy"]["value"] == pytest.approx(accuracy_score(true, pred))
        assert got["scoliosis_precision_macro"]["value"] == pytest.approx(p)
        assert got["scoliosis_recall_macro"]["value"] == pytest.approx(r)
        assert got["scoliosis_f1_macro"]["value"] == pytest.approx(f)
        assert np.array(m["report"]["confusion"]).sum() == 6
        if solver == "none":
            assert got["ssim"]["value"] == pytest.approx(1.0)
        if solver == "target-swap":  # every probe is another test subject's recording
            assert all(x["prediction"]["target_subject"] != x["groups"]["subject"] for x in lines)
            assert got["ssim"]["value"] < 1.0


def test_a_corrupt_frame_is_that_sequences_error_and_the_rest_is_scored(tmp_path):
    cli = pytest.importorskip("harness.cli")
    write_casia_b(tmp_path / "casia", [1, 2, 75, 76], views=("054", "090"), n_frames=4)
    bad = sorted((tmp_path / "casia" / "076" / "bg-01" / "090").glob("*.png"))[1]
    bad.write_bytes(b"not a png")
    rc = cli.main(["run", "--task", "gait_deid", "--solver", "blur", "--data", str(tmp_path / "casia"),
                   "--out", str(tmp_path / "runs"), "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress",
                   "--bootstrap", "10"])
    assert rc in (0, None)
    (run_dir,) = (tmp_path / "runs").glob("gait_deid-blur-*")
    m = json.loads((run_dir / "metrics.json").read_text())
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    errors = [x for x in lines if x.get("error")]
    assert m["n_samples"] == 2 * 10 * 2 and len(errors) == 1
    assert errors[0]["sample_id"] == "076/bg-01/090" and "076/bg-01/090" in errors[0]["error"]
    assert np.isfinite(m["metrics"]["rank1_nm"]["value"]) and np.isfinite(m["metrics"]["rank1_bg"]["value"])


def test_scoliosis1k_with_an_opengait_screener(opengait_tree, tmp_path):
    from tasks.gait_deid.loaders import load_sequence
    from tasks.gait_deid.synthetic import write_scoliosis1k
    from vision_models.gait.opengait import OpenGaitRecognizer

    cli = pytest.importorskip("harness.cli")
    cfg = opengait_tree[0].with_name("tiny_sconet.yaml")
    ckpt = opengait_tree[1].with_name("TinyScoNet.pt")
    write_scoliosis1k(tmp_path / "scol", n_subjects=9, views=("090",), n_frames=4)
    rc = cli.main(["run", "--task", "gait_deid", "--solver", "none", "--data", str(tmp_path / "scol"),
                   "--out", str(tmp_path / "runs"), "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress",
                   "--bootstrap", "10", "--role", f"screener=opengait:{cfg}:{ckpt}"])
    assert rc in (0, None)
    (run_dir,) = (tmp_path / "runs").glob("gait_deid-none-*")
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["n_errors"] == 0 and "TinyGait" in m["report"]["screener_fit"]
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    # independently: OpenGait's evaluate_scoliosis reads argmax over classes of the logits' mean over parts
    net = OpenGaitRecognizer(cfg, ckpt, device="cpu")
    classes = ["negative", "neutral", "positive"]
    for x in lines:
        logits = net.embed([load_sequence(x["target"]["source"], "pkl")]).reshape(3, 4)
        assert x["scores"]["screen"] == classes[int(np.argmax(logits.mean(-1)))]
    true = [x["target"]["label"] for x in lines]
    acc = np.mean([t == x["scores"]["screen"] for t, x in zip(true, lines, strict=True)])
    assert m["metrics"]["scoliosis_accuracy"]["value"] == pytest.approx(acc)


def test_opengait_evaluator_transform_and_frame_limit_follow_the_config(opengait_tree, tmp_path):
    from vision_models.gait import cut_to_44
    from vision_models.gait.opengait import OpenGaitRecognizer

    cfg, ckpt = opengait_tree
    seq = _seqs(1)[0]
    default = OpenGaitRecognizer(cfg, ckpt, device="cpu")
    np.testing.assert_array_equal(default.transform(seq), cut_to_44(seq))  # the cutting default: 64x44
    other = cfg.with_name("tiny_nocut.yaml")
    other.write_text(cfg.read_text().replace("  restore_ckpt_strict: true", "  restore_ckpt_strict: true\n"
                                             "  transform:\n    - type: BaseSilTransform\n"
                                             "  sampler:\n    frames_all_limit: 3"))
    nocut = OpenGaitRecognizer(other, ckpt, device="cpu")
    assert nocut.transform(seq).shape == (len(seq), 64, 64) and nocut.frames_limit == 3
    np.testing.assert_allclose(nocut.embed([seq]), nocut.embed([seq[:3]]))
    assert not np.allclose(nocut.embed([seq]), default.embed([seq]))
