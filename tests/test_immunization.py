"""immunization: prompts.csv validation, the L-inf budget of every immunizer, the editors and gradient
immunizers on tiny random diffusers pipelines (CPU), and the ISR path end to end with two fake judge
servers (answers scripted from the edited pixels, so the expected ISR is recomputed here from the stored
edits), a 404 judge, and quality numbers checked against scikit-image and a direct open_clip computation."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from servers.fake_openai import FakeOpenAIServer, ServerConfig

from harness.core import DataError, HarnessError
from harness.runner import RunConfig, RunSettings, run
from tasks.immunization.example import write_example_folder
from tasks.immunization.loader import load_rgb, load_samples

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
EPS = 8 / 255


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "prompts.csv").open() as fh:
        return list(csv.DictReader(fh))


def _write_rows(folder: Path, rows: list[dict[str, str]], fields=("image", "prompt", "mask")) -> None:
    with (folder / "prompts.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows([{k: r.get(k, "") for k in fields} for r in rows])


# ------------------------------------------------------------------------------------------- data
def test_loader_one_sample_per_row_grouped_by_image(tmp_path):
    folder = write_example_folder(tmp_path / "d", n=2, prompts_per_image=2, masks=True)
    samples = load_samples(folder)
    assert len(samples) == 4 and len({s.id for s in samples}) == 4
    assert [s.groups["image"] for s in samples] == ["images/img000.png"] * 2 + ["images/img001.png"] * 2
    assert samples[0].target["prompt"] == "add a hat" and samples[0].target["mask"].endswith("masks/img000.png")
    assert samples[0].target["row"] == 2 and samples[3].target["row"] == 5


@pytest.mark.parametrize("mutate, message", [
    (lambda f: (f / "prompts.csv").unlink(), "no prompts.csv"),
    (lambda f: _write_rows(f, [{"image": "images/img000.png"}], fields=("image", "mask")), "missing column(s) prompt"),
    (lambda f: _write_rows(f, [{"image": "images/img000.png", "prompt": "x"}, {"image": "images/img001.png"}]),
     "row 3: empty prompt for images/img001.png"),
    (lambda f: _write_rows(f, [{"image": "", "prompt": "x"}]), "row 2: empty image cell"),
    (lambda f: _write_rows(f, [{"image": "images/img000.png", "prompt": "x"}] * 2), "row 3: repeats row 2"),
    (lambda f: _write_rows(f, [{"image": "../outside.png", "prompt": "x"}]), "row 2: '../outside.png' is outside"),
])
def test_loader_errors_name_the_file_and_row(tmp_path, mutate, message):
    folder = write_example_folder(tmp_path / "d", n=2)
    mutate(folder)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_samples(folder)


def test_a_missing_or_corrupt_image_is_an_error_naming_file_and_row(tmp_path):
    folder = write_example_folder(tmp_path / "d", n=2)
    (folder / "images" / "img001.png").write_bytes(b"not a png")
    _write_rows(folder, [*_rows(folder), {"image": "images/gone.png", "prompt": "x"}])
    s = load_samples(folder)
    with pytest.raises(DataError, match=r"img001.png: not a readable image \(.*prompts.csv row 3\)"):
        load_rgb(s[1].target["image"], s[1].target)
    with pytest.raises(DataError, match=r"gone.png: image file not found \(.*prompts.csv row 4\)"):
        load_rgb(s[2].target["image"], s[2].target)


# ------------------------------------------------------------------------------------ options, budget
def test_eps_accepts_fractions_and_floats_and_refuses_the_rest():
    from tasks.immunization.solvers import NoiseImmunization, PgdEncoderImmunization

    assert NoiseImmunization(eps="8/255").opts.eps == pytest.approx(8 / 255)
    assert NoiseImmunization(eps=0.05).opts.eps == 0.05
    assert NoiseImmunization(eps="0.05").options["eps"] == 0.05
    assert PgdEncoderImmunization(step_size="1/255").opts.step_size == pytest.approx(1 / 255)
    for bad in ("eight", "8/0", 0, 8, -0.1):
        with pytest.raises(HarnessError, match="option eps="):
            NoiseImmunization(eps=bad)
    with pytest.raises(HarnessError, match=r"(?s)unknown option 'epsilon'.*valid options:\n  eps: float"):
        NoiseImmunization(epsilon=0.1)


def test_project_uint8_by_hand():
    from vision_models.immunize import budget_levels, linf, project_uint8

    clean = np.array([[[0, 100, 255]]], np.uint8)
    cand = np.array([[[-20.0, 120.4, 240.6]]])
    assert budget_levels(8 / 255) == 8 and budget_levels(0.05) == 12  # 12.75 levels -> 12
    assert project_uint8(clean, cand, 8 / 255).tolist() == [[[0, 108, 247]]]
    assert linf(clean, np.array([[[3, 92, 255]]], np.uint8)) == 8 / 255


@pytest.mark.parametrize("solver, options", [
    ("noise", {}), ("noise", {"dist": "sign"}), ("jpeg", {"quality": 10}), ("blur", {"sigma": 3.0}), ("none", {}),
])
def test_cpu_immunizers_stay_within_the_budget(tmp_path, solver, options):
    import asyncio

    from harness.artifacts import ArtifactStore
    from harness.core import RunContext
    from harness.registry import get_task, make_solver
    from vision_models.faces.quality import psnr

    folder = write_example_folder(tmp_path / "d", n=2)
    task = get_task("immunization")
    store = ArtifactStore(tmp_path / "art")
    s = make_solver(task, solver, RunContext(artifacts=store, seed=3), {"eps": "8/255", **options})
    for sample in load_samples(folder):
        out = asyncio.run(s.solve(sample))
        clean = load_rgb(sample.target["image"])
        prot = store.load_image(out.prediction["protected"])
        delta = np.abs(prot.astype(int) - clean.astype(int)).max()
        assert delta <= 8 and out.info["linf"] == delta / 255
        if solver == "none":
            assert delta == 0
        elif options.get("dist") == "sign":
            d = prot.astype(int) - clean.astype(int)
            assert delta == 8 and np.all((np.abs(d) == 8) | (prot == 0) | (prot == 255))  # clipped at 0/255 only
        else:
            assert delta > 0 and psnr(clean, prot) < 100


def test_unprojected_jpeg_reports_the_budget_it_used(tmp_path):
    from vision_models.immunize import jpeg, linf

    folder = write_example_folder(tmp_path / "d", n=1)
    clean = load_rgb(str(folder / "images" / "img000.png"))
    assert linf(clean, jpeg(clean, 5)) > 8 / 255  # so projection is doing the work in the test above


# ------------------------------------------------------------------------------------------- editors
def test_editor_specs():
    from vision_models.diffusion_editors import editor_shape, parse_editor_spec

    s = parse_editor_spec("tiny-random")
    assert (s.kind, s.model, s.steps, s.size) == ("instruct-pix2pix", "tiny-random", 2, 64)
    s = parse_editor_spec("sdedit:runwayml/stable-diffusion-v1-5?steps=30&strength=0.5")
    assert (s.kind, s.model, s.steps, s.strength, s.size) == ("sdedit", "runwayml/stable-diffusion-v1-5", 30, 0.5, 512)
    assert parse_editor_spec("sd-inpaint:/w/inpaint").kind == "inpaint"
    for bad, msg in (("pix2pix:x", "expected instruct-pix2pix:"), ("sdedit:x?foo=1", "unknown setting 'foo'"),
                     ("sdedit:x?steps=a", "not a number"), ("sdedit:x?strength=2", "0 < strength")):
        with pytest.raises(HarnessError, match=msg):
            parse_editor_spec(bad)
    assert editor_shape(64, 64, 64) == (64, 64) and editor_shape(300, 400, 512) == (384, 512)


def test_an_editor_without_weights_says_weights_missing(tmp_path):
    pytest.importorskip("diffusers")
    from vision_models.diffusion_editors import load_editor

    with pytest.raises(HarnessError, match="weights missing"):
        load_editor(f"sdedit:{tmp_path / 'no-such-model'}")


@pytest.mark.parametrize("kind", ["sd-inpaint", "sdedit"])
def test_inpaint_and_sdedit_editors_and_gradient_immunizers_run_on_tiny_random(tmp_path, kind):
    pytest.importorskip("diffusers")
    from vision_models import immunize
    from vision_models.diffusion_editors import load_editor

    folder = write_example_folder(tmp_path / "d", n=1, masks=True)
    (sample,) = load_samples(folder)
    image = load_rgb(sample.target["image"])
    mask = load_rgb(sample.target["mask"]).max(axis=2)
    editor = load_editor(f"{kind}:tiny-random:1", "cpu")
    out = editor.edit(image, "add a hat", 5, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out, editor.edit(image, "add a hat", 5, mask))  # same seed, same pixels
    if kind == "sd-inpaint":
        with pytest.raises(HarnessError, match="needs a mask"):
            editor.edit(image, "add a hat", 5, None)
    prot, info = immunize.sifm(editor, image, EPS, 1, 2 / 255, timesteps=1, mask=mask, rng=np.random.default_rng(0))
    assert immunize.linf(image, prot) <= EPS and info["feature_shift"] > 0
    prot, info = immunize.pgd_encoder(editor, image, EPS, 1, 2 / 255, "gray")
    assert 0 < immunize.linf(image, prot) <= EPS


def test_pgd_encoder_moves_the_latent_more_than_noise_at_the_same_budget(tmp_path):
    pytest.importorskip("diffusers")
    import torch

    from vision_models import immunize
    from vision_models.diffusion_editors import load_editor, to_tensor

    editor = load_editor("tiny-random", "cpu")
    image = load_rgb(str(write_example_folder(tmp_path / "d", n=1) / "images" / "img000.png"))
    prot, info = immunize.pgd_encoder(editor, image, EPS, 4, 2 / 255, "away", np.random.default_rng(0))
    noisy = immunize.uniform_noise(image, EPS, np.random.default_rng(0), "sign")
    with torch.no_grad():
        clean = editor.encode(to_tensor(image))
        noise_mse = float(((editor.encode(to_tensor(noisy)) - clean) ** 2).mean())
    assert immunize.linf(image, prot) <= EPS
    assert info["latent_mse_to_clean"] > noise_mse > 0


def test_sifm_gradient_steps_push_features_further_than_its_random_start(tmp_path):
    pytest.importorskip("diffusers")
    from vision_models import immunize
    from vision_models.diffusion_editors import load_editor

    editor = load_editor("tiny-random", "cpu")
    image = load_rgb(str(write_example_folder(tmp_path / "d", n=1) / "images" / "img000.png"))
    kw = {"timesteps": 1, "norm_weight": 0.0, "seed": 1}
    _, start = immunize.sifm(editor, image, EPS, 0, 2 / 255, rng=np.random.default_rng(0), **kw)
    prot, pushed = immunize.sifm(editor, image, EPS, 2, 2 / 255, rng=np.random.default_rng(0), **kw)
    assert immunize.linf(image, prot) <= EPS
    assert pushed["feature_shift"] > start["feature_shift"] > 0
    _, shrunk = immunize.sifm(editor, image, EPS, 2, 2 / 255, timesteps=1, norm_weight=10.0, seed=1,
                              rng=np.random.default_rng(0))
    assert shrunk["feature_energy_ratio"] < start["feature_energy_ratio"]


# ------------------------------------------------------------------------------- ISR end to end
def _pixels_hash(data_url: str) -> int:
    from PIL import Image

    raw = base64.b64decode(data_url.split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as img:
        return pixel_hash(np.asarray(img.convert("RGB")))


def pixel_hash(pixels: np.ndarray) -> int:
    return int(hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:8], 16)


def rule(model: str, h: int) -> dict[str, str]:
    """The scripted judges: answers are functions of the edited image's pixels."""
    if model == "judge-a":
        return {"follows_instruction": "no" if h % 3 == 0 else "yes", "degraded": "yes" if h % 2 == 0 else "no"}
    return {"follows_instruction": "no" if h % 5 < 2 else "yes", "degraded": "yes" if (h // 7) % 2 == 0 else "no"}


def isr_judge(prompt: str, body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    images = [p["image_url"]["url"] for p in content if p.get("type") == "image_url"]
    assert len(images) == 2 and body.get("temperature") == 0
    return json.dumps({**rule(body["model"], _pixels_hash(images[1])), "reason": "scripted"})


def _server(model: str) -> FakeOpenAIServer:
    return FakeOpenAIServer(ServerConfig(answer=f"{__name__}:isr_judge", served_models=(model,), error_style="vllm"))


def _run(tmp_path: Path, data: Path, solver: str, judges: tuple[str, ...], **options: Any):
    cfg = RunConfig("immunization", solver=solver, solver_options=options, judges=judges, n_boot=20,
                    roles=("editor=tiny-random", "lpips=tiny-random", "clip=tiny-random-clip"))
    settings = RunSettings(data=data, out_dir=tmp_path / "runs", show_progress=False, db_url=None, max_retries=0)
    return run(cfg, settings)


def _majority(a: str, b: str, on_tie: str) -> str:
    return a if a == b else on_tie


def test_isr_end_to_end_with_two_judge_servers(tmp_path):
    pytest.importorskip("diffusers")
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    from sklearn.metrics import cohen_kappa_score

    from harness.artifacts import ArtifactStore

    data = write_example_folder(tmp_path / "d", n=2)
    _write_rows(data, [*_rows(data), {"image": "images/gone.png", "prompt": "add a hat"}])
    with _server("judge-a") as a, _server("judge-b") as b:
        judges = (f"judge-a@{a.base_url}", f"judge-b@{b.base_url}")
        res = _run(tmp_path, data, "noise", judges, eps="8/255")
        assert a.stats()["completed"] == b.stats()["completed"] == 4  # 2 edits x 2 samples each
    assert res.n_errors == 1
    (bad,) = [r for r in res.records if not r.ok]
    assert "gone.png: image file not found" in bad.error and "prompts.csv row 4" in bad.error
    store = ArtifactStore(tmp_path / "runs" / "artifacts")
    ok = [r for r in res.records if r.ok]
    expected: dict[str, list[float]] = {k: [] for k in ("edit_failed", "not_followed", "degraded",
                                                        "clean_edit_failed")}
    answers: dict[str, list[list[str]]] = {"follows_instruction": [], "degraded": []}
    for r in ok:
        s = r.scores
        assert s["edit_seed"] == r.prediction["edit_seed"]  # the seed is in the prediction: scores keyed by it
        clean, prot = load_rgb(r.target["image"]), store.load_image(r.prediction["protected"])
        assert s["linf"] <= EPS and s["psnr"] == pytest.approx(peak_signal_noise_ratio(clean, prot, data_range=255))
        assert s["ssim"] == pytest.approx(structural_similarity(
            clean, prot, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=255), abs=1e-6)
        ec, ep = store.load_image(s["images"]["edit_clean"]), store.load_image(s["images"]["edit_protected"])
        assert np.array_equal(store.load_image(s["images"]["input_protected"]), prot)  # 64x64: no resize
        assert s["edit_psnr"] == pytest.approx(min(100.0, peak_signal_noise_ratio(ec, ep, data_range=255)))
        assert s["edit_lpips"] >= 0 and 0 <= s["clip_score"] <= 100
        for kind, img in (("", ep), ("clean_", ec)):
            ra, rb = rule("judge-a", pixel_hash(img)), rule("judge-b", pixel_hash(img))
            follows = _majority(ra["follows_instruction"], rb["follows_instruction"], "yes")
            degraded = _majority(ra["degraded"], rb["degraded"], "no")
            assert r.scores[f"{kind}edit_failed"] == float(follows == "no" or degraded == "yes")
            if not kind:
                expected["not_followed"].append(float(follows == "no"))
                expected["degraded"].append(float(degraded == "yes"))
            expected[f"{kind}edit_failed"].append(float(follows == "no" or degraded == "yes"))
            for q in answers:
                answers[q].append([ra[q], rb[q]])
        assert r.scores["grading"]["answers"]["follows_instruction"] == [
            rule(j, pixel_hash(ep))["follows_instruction"] for j in ("judge-a", "judge-b")]
    m = res.metrics
    assert m["isr"].value == pytest.approx(np.mean(expected["edit_failed"]))
    assert m["isr_not_followed"].value == pytest.approx(np.mean(expected["not_followed"]))
    assert m["isr_degraded"].value == pytest.approx(np.mean(expected["degraded"]))
    assert m["isr_unprotected"].value == pytest.approx(np.mean(expected["clean_edit_failed"]))
    assert m["linf_max"].value == max(r.scores["linf"] for r in ok) <= EPS
    judges_report = res.report["judges"]
    assert judges_report["panel"] == ["judge-a", "judge-b"] and "tie resolves" in judges_report["tie_rule"]
    for q, rows in answers.items():
        got = judges_report["agreement_all_edits"][q]
        assert got["items"] == 4
        ref = cohen_kappa_score([x[0] for x in rows], [x[1] for x in rows])
        if np.isfinite(ref):
            assert got["cohen_kappa"] == pytest.approx(ref)
    lines = (res.run_dir / "transcripts.jsonl").read_text().splitlines()
    assert len(lines) == 8  # 2 samples x 2 edits x 2 judges


def test_clip_score_matches_open_clip_directly(tmp_path):
    pytest.importorskip("open_clip")
    import open_clip
    import torch
    from PIL import Image

    from tasks.immunization.scorer import clip_score, load_clip

    img = load_rgb(str(write_example_folder(tmp_path / "d", n=1) / "images" / "img000.png"))
    got = clip_score(load_clip("tiny-random-clip"), [img], "add a hat")[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, _, preprocess = open_clip.create_model_and_transforms("tiny-random-clip", pretrained=None)
    tok = open_clip.get_tokenizer("tiny-random-clip")
    with torch.no_grad():
        fi = model.encode_image(preprocess(Image.fromarray(img))[None])[0]
        ft = model.encode_text(tok(["add a hat"]))[0]
    cos = float(fi @ ft / (fi.norm() * ft.norm()))
    assert got == pytest.approx(100 * max(cos, 0.0), abs=1e-4)


def test_no_protection_gives_identical_edits_and_a_404_judge_is_a_reported_error(tmp_path):
    pytest.importorskip("diffusers")
    data = write_example_folder(tmp_path / "d", n=1)
    res = _run(tmp_path, data, "none", ())
    (r,) = res.records
    assert r.ok and r.scores["linf"] == 0 and r.scores["edit_psnr"] == 100.0 and r.scores["edit_lpips"] == 0.0
    assert r.scores["images"]["edit_clean"] == r.scores["images"]["edit_protected"]  # same prompt, same seed
    assert "give at least two judges" in " ".join(res.report["notes"])
    with _server("judge-a") as a:
        res = _run(tmp_path, data, "none", (f"judge-a@{a.base_url}", f"judge-b@{a.base_url}"))
    (r,) = res.records
    assert not r.ok and "judge error" in r.error and "HTTP 404" in r.error
    assert res.report["n_judge_errors"] == 1
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert metrics["n_errors"] == 1 and metrics["model_calls"]["judges_failed_every_call"] == ["judge/judge-b"]


def test_one_judge_is_refused_before_editing(tmp_path):
    import asyncio

    from harness.core import ScoreContext
    from harness.roles import build_roles
    from tasks.immunization.scorer import score_sample

    sctx = ScoreContext(roles=build_roles(["editor=tiny-random"], ["j@http://127.0.0.1:9/v1"]))
    with pytest.raises(HarnessError, match="at least two judges"):
        asyncio.run(score_sample("x", {}, {"protected": "ab/" + "c" * 62 + ".png"}, sctx))


def test_sifm_protects_an_image_once_unless_it_is_told_the_prompt(tmp_path):
    pytest.importorskip("diffusers")
    import asyncio

    from harness.artifacts import ArtifactStore
    from harness.core import RunContext
    from harness.registry import get_task, make_solver
    from harness.roles import build_roles

    samples = load_samples(write_example_folder(tmp_path / "d", n=1, prompts_per_image=2))
    store = ArtifactStore(tmp_path / "art")
    ctx = RunContext(artifacts=store, roles=build_roles(["editor=tiny-random"]))

    def protect(**options: Any) -> list[str]:
        solver = make_solver(get_task("immunization"), "sifm", ctx, {"steps": 1, "timesteps": 1, **options})
        assert solver.identity()["editor"] == "tiny-random"
        return [asyncio.run(solver.solve(s)).prediction["protected"] for s in samples]

    blind, told = protect(), protect(use_prompt=True)
    assert blind[0] == blind[1] and told[0] != told[1]
    clean = load_rgb(samples[0].target["image"])
    assert all(np.abs(store.load_image(r).astype(int) - clean.astype(int)).max() <= 8 for r in blind + told)


def _fleiss_by_hand(rows: list[list[str]]) -> float:
    cats = sorted({v for r in rows for v in r})
    n, k = len(rows[0]), len(rows)
    table = [[r.count(c) for c in cats] for r in rows]
    p_i = [(sum(x * x for x in t) - n) / (n * (n - 1)) for t in table]
    p_j = [sum(t[j] for t in table) / (k * n) for j in range(len(cats))]
    p_bar, p_e = sum(p_i) / k, sum(p * p for p in p_j)
    return (p_bar - p_e) / (1 - p_e)


def test_three_judges_report_fleiss_kappa_and_metrics_are_means_over_edits():
    from harness.core import Record
    from harness.registry import get_task

    task = get_task("immunization")
    follows = [["yes", "yes", "no"], ["no", "no", "no"], ["yes", "no", "yes"], ["yes", "yes", "yes"],
               ["no", "yes", "no"]]
    degraded = [["no", "no", "no"], ["yes", "no", "yes"], ["no", "no", "no"], ["yes", "yes", "no"],
                ["no", "no", "yes"]]
    records = []
    for i, (f, d) in enumerate(zip(follows, degraded, strict=True)):
        nf, dg = float(f.count("no") >= 2), float(d.count("yes") >= 2)
        grading = {"rubric": "isr@1#x", "judges": ["a", "b", "c"], "answers": {"follows_instruction": f, "degraded": d},
                   "values": {}, "ties": {}, "errors": {}}
        scores = {"edit_failed": max(nf, dg), "not_followed": nf, "degraded": dg, "clean_edit_failed": float(i == 0),
                  "edit_psnr": 30.0 + i, "linf": i / 255, "grading": grading, "grading_clean": grading}
        records.append(Record(f"s{i}", "test", None, {"protected": "x"}, scores, {"image": f"i{i}"}))
    values = {m.name: m.compute(records) for m in task.metrics("edits")}
    assert values["isr"] == 0.6 and values["isr_not_followed"] == 0.4 and values["isr_degraded"] == 0.4
    assert values["isr_unprotected"] == 0.2 and values["isr_above_floor"] == pytest.approx(0.4)
    assert values["edit_psnr"] == 32.0 and values["linf_max"] == 4 / 255 and np.isnan(values["clip_score"])
    report = task.report(records, "edits", Path("."))
    got = report["judges"]["agreement_protected"]
    assert got["follows_instruction"]["fleiss_kappa"] == pytest.approx(_fleiss_by_hand(follows))
    assert got["degraded"]["fleiss_kappa"] == pytest.approx(_fleiss_by_hand(degraded))
    assert any("lpips" in n for n in report["notes"]) and any("clip" in n for n in report["notes"])


@pytest.mark.gpu
def test_gradient_immunizers_and_edits_on_the_gpu(tmp_path):
    pytest.importorskip("diffusers")
    from vision_models import immunize
    from vision_models.diffusion_editors import load_editor

    image = load_rgb(str(write_example_folder(tmp_path / "d", n=1, size=128) / "images" / "img000.png"))
    editor = load_editor("instruct-pix2pix:tiny-random?size=128", "cuda")
    prot, info = immunize.pgd_encoder(editor, image, EPS, 5, 2 / 255, "away", np.random.default_rng(0))
    assert immunize.linf(image, prot) <= EPS and info["latent_mse_to_clean"] > 0
    prot, info = immunize.sifm(editor, image, EPS, 3, 2 / 255, rng=np.random.default_rng(0))
    assert immunize.linf(image, prot) <= EPS and info["feature_shift"] > 0
    assert editor.edit(prot, "add a hat", 1).shape == image.shape
