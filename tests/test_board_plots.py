"""The board's privacy–utility Pareto plots (tasks with `pareto_axes`: fdeid, face_anon) and the run
page's artifact thumbnails (uploaded files kept content-addressed, served only by references the
ArtifactStore validates), through FastAPI's TestClient; the Pareto front itself against a
hand-worked example and an independent sweep."""

from __future__ import annotations

import base64
import io
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from harness import registry
from harness.artifacts import ArtifactStore
from harness.board.client import build_payload
from harness.board.plots import ParetoPoint, pareto_front, pareto_png
from harness.core import Fold, HarnessError, Metric, Sample, ScoreContext, Task
from harness.registry import register_task
from harness.stats import MetricValue
from tests.board_helpers import auth, create_app, fresh_db, settings

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    with fresh_db(f"sqlite:///{tmp_path / 'board.sqlite'}") as u:
        yield u


# ------------------------------------------------------------------------------------ the front itself
def test_pareto_front_by_hand_both_higher() -> None:
    # (ssim, psr): (1, 0) and (0.85, 1) are on the front, (0.8, 0.5) is dominated by (0.85, 1),
    # (0.95, 0.6) is on it, (0.95, 0.4) is dominated by (0.95, 0.6) (equal x, lower y).
    pts = [(1.0, 0.0), (0.85, 1.0), (0.8, 0.5), (0.95, 0.6), (0.95, 0.4)]
    assert pareto_front(pts) == [0, 1, 3]


def test_pareto_front_by_hand_lower_is_better_ties_and_nan() -> None:
    # (ssim higher, re-ID rate lower): (0.85, 0.2) is dominated by (0.9, 0.1); the two equal points
    # (0.95, 0.5) dominate each other nowhere, so both stay; a NaN point is left out and would
    # otherwise dominate (0.8, 0.05) with its re-ID rate 0.
    pts = [(0.9, 0.1), (0.95, 0.5), (0.8, 0.05), (0.85, 0.2), (0.95, 0.5), (math.nan, 0.0)]
    assert pareto_front(pts, (True, False)) == [0, 1, 2, 4]
    # the same points with both axes flipped in sign and "higher" flipped: the same front
    assert pareto_front([(-x, -y) for x, y in pts], (False, True)) == [0, 1, 2, 4]


def test_pareto_front_matches_a_sweep_on_random_points() -> None:
    """Independent check: sorted by x (best first), a point is on the front iff its y beats every y
    seen before it (continuous random points: no ties)."""
    rng = random.Random(3)
    for _ in range(50):
        pts = [(rng.random(), rng.random()) for _ in range(rng.randint(1, 30))]
        best, sweep = -math.inf, set()
        for i in sorted(range(len(pts)), key=lambda i: -pts[i][0]):
            if pts[i][1] > best:
                sweep.add(i)
                best = pts[i][1]
        assert pareto_front(pts) == sorted(sweep)


def test_labels_are_plain_text_in_the_png() -> None:
    """A solver name that would be invalid mathtext draws as text instead of failing the plot."""
    pts = [ParetoPoint("$\\frac{$ <script>", 0.9, 0.5, "a"), ParetoPoint("x" * 200, 0.8, 0.9, "b")]
    png = pareto_png(pts, "ssim", "psr", (True, True), "fdeid / folders $x", highlight="a")
    assert png[:8] == PNG


# --------------------------------------------------------------------------- the board's Pareto routes
def add_row(store, run_id: str, task: str, protocol: str, metrics: dict[str, tuple[float, bool]], *,
            solver: str = "blur", options: dict | None = None, scorer: str = "2", fp: str = "fp-a") -> None:
    manifest = {"run_id": run_id, "config": {"task": task, "protocol": protocol, "solver": solver,
                                             "solver_options": options or {}, "model": None},
                "config_hash": "0" * 16, "data_fingerprint": fp, "n_samples": 10, "n_errors": 0,
                "scorer_version": scorer, "finished": f"2026-11-30T00:00:{len(run_id):02d}"}
    values = {n: MetricValue(n, v, v, v, 10, hib) for n, (v, hib) in metrics.items()}
    store.add_run(manifest, values, next(iter(metrics)))


def fdeid_rows(store) -> None:
    rows = {"identity": (1.0, 0.0), "blur": (0.9, 0.6), "mask": (0.85, 1.0), "bad": (0.8, 0.5)}
    for solver, (ssim, psr) in rows.items():
        add_row(store, f"f-{solver}", "fdeid", "folders", {"psr": (psr, True), "ssim": (ssim, True)}, solver=solver)
    add_row(store, "f-nossim", "fdeid", "folders", {"psr": (0.7, True)}, solver="noq")  # not a point
    add_row(store, "f-old", "fdeid", "folders", {"psr": (0.9, True), "ssim": (0.9, True)}, scorer="1")  # alone


def test_task_page_shows_a_pareto_plot_per_group_with_two_or_more_runs(db_url: str) -> None:
    client = TestClient(create_app(settings(db_url)))
    fdeid_rows(client.app.state.store)
    html = client.get("/task/fdeid", params={"protocol": "folders"}).text
    url = "/task/fdeid/pareto.png?protocol=folders&scorer=2&data=fp-a"
    assert url.replace("&", "&amp;") in html
    assert "scorer=1" not in html  # a group of one run has no plot
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:8] == PNG
    from PIL import Image

    assert min(Image.open(io.BytesIO(r.content)).size) > 100
    assert client.get("/task/fdeid/pareto.png", params={"protocol": "folders", "scorer": "1",
                                                        "data": "fp-a"}).status_code == 404
    assert client.get("/task/fdeid/pareto.png", params={"protocol": "folders", "scorer": "9"}).status_code == 404
    group = next(g for g in client.get("/api/tasks/fdeid", params={"protocol": "folders"}).json()["groups"]
                 if g["scorer_version"] == "2")
    pareto = group["pareto"]
    assert (pareto["x"], pareto["y"], pareto["higher_is_better"]) == ("ssim", "psr", [True, True])
    on = {p["run_id"]: p["on_front"] for p in pareto["points"]}
    assert on == {"f-identity": True, "f-blur": True, "f-mask": True, "f-bad": False}  # f-nossim: no point


def test_run_page_shows_its_groups_pareto_plot_with_the_run_ringed(db_url: str) -> None:
    client = TestClient(create_app(settings(db_url)))
    fdeid_rows(client.app.state.store)
    assert "/run/f-bad/pareto.png" in client.get("/run/f-bad").text
    mine = client.get("/run/f-bad/pareto.png")
    group = client.get("/task/fdeid/pareto.png", params={"protocol": "folders", "scorer": "2", "data": "fp-a"})
    assert mine.status_code == 200 and mine.content[:8] == PNG and mine.content != group.content
    assert "pareto.png" not in client.get("/run/f-old").text  # alone in its group
    assert client.get("/run/f-old/pareto.png").status_code == 404
    assert "pareto.png" not in client.get("/run/f-nossim").text  # not a point of the plot
    assert client.get("/api/runs/f-bad").json()["pareto"] == "/run/f-bad/pareto.png"
    assert client.get("/api/runs/f-old").json()["pareto"] is None


def test_lower_is_better_privacy_comes_from_the_stored_metric(db_url: str) -> None:
    client = TestClient(create_app(settings(db_url)))
    store = client.app.state.store
    evil = "$\\frac{$ <b>bold</b>"
    for solver, ssim, reid in (("blur", 0.9, 0.1), ("pixelate", 0.8, 0.05), ("noise", 0.7, 0.2)):
        add_row(store, f"a-{solver}", "face_anon", "images", {"re_id_rate": (reid, False), "ssim": (ssim, True)},
                solver=solver, options={"note": evil} if solver == "noise" else None, scorer="1")
    g = client.get("/api/tasks/face_anon").json()["groups"][0]["pareto"]
    assert g["higher_is_better"] == [True, False]
    assert {p["run_id"]: p["on_front"] for p in g["points"]} == {"a-blur": True, "a-pixelate": True,
                                                                 "a-noise": False}
    html = client.get("/task/face_anon").text
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert client.get(g["png"]).content[:8] == PNG  # the markup-like label draws as text


# ----------------------------------------------------------------------- artifacts kept and thumbnailed
class ImageToyTask(Task):
    """Four samples; the prediction names an array artifact (right when its sum is the target) and each
    record carries a protected image (PNG) as a second artifact."""

    name = "boardimg"
    protocols = {"all": "four samples, one fold"}
    default_protocol = "all"
    default_solver = "none"
    data_folder = "boardimg"
    data_dir: Path | None = None

    def resolve_data(self, data: Path | None) -> Path:
        assert ImageToyTask.data_dir is not None
        return ImageToyTask.data_dir

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        return [Fold("all", [Sample(f"s{i}", {}, i) for i in range(4)])]

    def score(self, sample: Sample, prediction: object) -> dict:
        raise HarnessError("boardimg scores with the run's artifacts: use ascore")

    async def ascore(self, sample: Sample, prediction: object, ctx: ScoreContext) -> dict:
        return {"correct": float(ctx.artifacts.load_array(prediction["ref"]).sum() == sample.target)}

    def metrics(self, protocol: str) -> list[Metric]:
        return [Metric("accuracy", mean_of="correct")]


@pytest.fixture
def image_task(tmp_path: Path):
    data = tmp_path / "boardimg-data"
    data.mkdir()
    (data / "README").write_text("the toy's data")
    ImageToyTask.data_dir = data
    register_task(ImageToyTask)
    yield ImageToyTask
    registry._tasks.pop(ImageToyTask.name, None)


def write_image_run(root: Path, run_id: str) -> tuple[Path, list[str], list[str]]:
    store = ArtifactStore(root / "artifacts")
    lines, arrays, images = [], [], []
    for i in range(4):
        arr = store.put_array(np.asarray([i], dtype=np.int64))
        img = store.put_image(np.full((8, 8, 3), 40 * i, dtype=np.uint8))
        arrays.append(arr)
        images.append(img)
        lines.append({"sample_id": f"s{i}", "fold": "all", "split": "test", "prediction": {"ref": arr},
                      "artifacts": {"array": arr, "protected": img}, "error": None})
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    (run_dir / "manifest.json").write_text(json.dumps({
        "run_id": run_id, "status": "finished", "scorer_version": "1",
        "data_fingerprint": ImageToyTask().fingerprint(ImageToyTask.data_dir),
        "config": {"task": "boardimg", "protocol": "all", "solver": "images"}}))
    return run_dir, arrays, images


def test_uploaded_artifacts_are_kept_and_images_shown_as_thumbnails(db_url: str, tmp_path: Path,
                                                                     image_task: type) -> None:
    kept = tmp_path / "kept"
    client = TestClient(create_app(settings(db_url, artifacts_dir=kept)))
    run, arrays, images = write_image_run(tmp_path / "r", "img-1")
    r = client.post("/api/submit", content=build_payload(run), headers=auth())
    assert r.status_code == 201, r.text
    assert r.json()["metrics"]["accuracy"]["value"] == pytest.approx(1.0)
    for ref in arrays + images:  # content-addressed, the uploaded bytes
        assert (kept / ref).read_bytes() == (tmp_path / "r" / "artifacts" / ref).read_bytes()
    html = client.get("/run/img-1").text
    for ref in images:
        assert f'src="/run/img-1/artifact/{ref}"' in html
    assert f"/run/img-1/artifact/{arrays[0]}" not in html  # not an image: named, not linked
    t = client.get(f"/run/img-1/artifact/{images[2]}")
    assert t.status_code == 200 and t.headers["content-type"] == "image/png"
    assert t.headers["x-content-type-options"] == "nosniff"
    assert t.content == (kept / images[2]).read_bytes()
    from PIL import Image

    assert np.asarray(Image.open(io.BytesIO(t.content)))[0, 0].tolist() == [80, 80, 80]
    assert client.get(f"/run/img-1/artifact/{arrays[0]}").status_code == 404  # only images are served
    assert client.get("/api/runs/img-1/samples").json()["samples"][1]["artifacts"]["protected"] == images[1]


def test_artifact_route_refuses_traversing_and_foreign_refs(db_url: str, tmp_path: Path, image_task: type) -> None:
    kept = tmp_path / "kept"
    client = TestClient(create_app(settings(db_url, artifacts_dir=kept)))
    run, _, images = write_image_run(tmp_path / "r", "img-2")
    body = json.loads(build_payload(run))
    # a submitter who names files outside the store in a record's artifacts
    lines = [json.loads(x) for x in body["samples"].splitlines()]
    lines[0]["artifacts"].update({"evil": "../../board.sqlite", "evil2": "ab/../../board.png"})
    body["samples"] = "".join(json.dumps(d) + "\n" for d in lines)
    assert client.post("/api/submit", content=json.dumps(body), headers=auth()).status_code == 201
    html = client.get("/run/img-2").text
    assert "/artifact/../" not in html and "/artifact/ab/../" not in html and "evil" in html
    secret = tmp_path / "board.png"
    secret.write_bytes(PNG + b"secret")
    for url in ("/run/img-2/artifact/..%2F..%2Fboard.sqlite", "/run/img-2/artifact/ab/..%2F..%2Fboard.png",
                "/run/img-2/artifact/../../board.png", "/run/img-2/artifact/..%2F../board.png",
                "/run/img-2/artifact/%2E%2E/board.png"):
        r = client.get(url)
        assert r.status_code in (400, 404), url
        assert b"secret" not in r.content and b"SQLite" not in r.content
    with pytest.raises(HarnessError, match="not an artifact reference"):
        ArtifactStore(kept).path("../../board.sqlite")  # the validation the route relies on
    # a valid image in the store that none of this run's records names is not served through it
    ref = ArtifactStore(kept).put_bytes(PNG + b"x", "png")
    assert client.get(f"/run/img-2/artifact/{ref}").status_code == 404
    assert client.get(f"/run/img-2/artifact/{images[0]}").status_code == 200


def test_oversize_artifacts_are_scored_but_not_kept_and_refused_runs_keep_nothing(db_url: str, tmp_path: Path,
                                                                                    image_task: type) -> None:
    kept = tmp_path / "kept"
    client = TestClient(create_app(settings(db_url, artifacts_dir=kept, max_artifact_bytes=10)))
    run, _, images = write_image_run(tmp_path / "r", "img-4")
    r = client.post("/api/submit", content=build_payload(run), headers=auth())
    assert r.status_code == 201 and r.json()["metrics"]["accuracy"]["value"] == pytest.approx(1.0)
    assert not kept.exists() or not any(p.is_file() for p in kept.rglob("*"))
    assert "/artifact/" not in client.get("/run/img-4").text
    # a swapped file is refused on parsing: nothing is kept
    client = TestClient(create_app(settings(db_url, artifacts_dir=kept)))
    body = json.loads(build_payload(write_image_run(tmp_path / "t", "img-5")[0]))
    ref = next(iter(body["artifact_files"]))
    body["artifact_files"][ref] = base64.b64encode(b"something else").decode()
    assert client.post("/api/submit", content=json.dumps(body), headers=auth()).status_code == 422
    assert not kept.exists() or not any(p.is_file() for p in kept.rglob("*"))
