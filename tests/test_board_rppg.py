"""rPPG on the board end to end: a real `harness run --task rppg` (synthetic UBFC subjects, face
detection, POS) submitted to a board that holds its own copy of the data. The board's recomputed
numbers equal the run's own even when the submitted scores are tampered with, its Bland–Altman plot
is drawn from the stored per-window HRs, and a copy of the data whose videos lost their modification
times is refused with the reason and how to copy instead."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from harness.board.client import build_payload
from harness.board.plots import paired_values
from harness.cli import main
from tests.board_helpers import auth, create_app, settings
from vision_models.rppg.synthetic import write_ubfc_subject

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def rppg_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data root with an `rppg` folder, finished run folder)."""
    tmp = tmp_path_factory.mktemp("rppg-board")
    root = tmp / "data"
    for i, hr in enumerate((66.0, 84.0), start=1):
        write_ubfc_subject(root / "rppg" / f"subject{i}", hr_bpm=hr, seconds=6.0, size=(160, 120), seed=i)
    assert main(["run", "--task", "rppg", "--protocol", "ubfc", "--solver", "pos", "--data", str(root / "rppg"),
                 "--out", str(tmp / "runs"), "--db", f"sqlite:///{tmp / 'lb.db'}", "--no-progress",
                 "--bootstrap", "100", "--concurrency", "1"]) == 0
    (run_dir,) = (tmp / "runs").glob("rppg-pos-*")
    return root, run_dir


def test_rppg_run_is_rescored_with_the_runs_own_numbers_and_a_bland_altman_plot(rppg_run, tmp_path: Path) -> None:
    root, run_dir = rppg_run
    local_lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    local = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    body = json.loads(build_payload(run_dir))
    tampered = [json.loads(x) for x in body["samples"].splitlines()]
    for d in tampered:  # a perfect score and a made-up reference: the board must use neither
        d["scores"] = {"hr_pred": [70.0], "hr_ref": [70.0], "abs_err": [0.0]}
        d["target"] = {"ppg": [0.0]}
    body["samples"] = "\n".join(json.dumps(d) for d in tampered) + "\n"
    client = TestClient(create_app(settings(f"sqlite:///{tmp_path / 'board.sqlite'}", data_root=root)))
    r = client.post("/api/submit", content=json.dumps(body), headers=auth())
    assert r.status_code == 201, r.text
    board = r.json()["metrics"]
    assert set(board) == set(local) and local["mae"]["value"] > 0
    for name, m in local.items():  # same records, same bootstrap (100 replicates, seed 0): same numbers
        for key in ("value", "ci_low", "ci_high"):
            assert board[name][key] == pytest.approx(m[key], abs=1e-9, nan_ok=True), (name, key)
    api = client.get(f"/api/runs/{run_dir.name}").json()
    (plot,) = [p for p in api["plots"] if p.endswith("/bland_altman_hr.png")]
    assert client.get(plot).content[:8] == PNG
    # the plot's points are the run's own per-window HRs (the stored, server-scored records)
    pred, ref = paired_values(client.app.state.store.records(run_dir.name))["hr"]
    assert pred.tolist() == [h for d in local_lines for h in d["scores"]["hr_pred"]]
    assert ref.tolist() == [h for d in local_lines for h in d["scores"]["hr_ref"]]
    assert not np.allclose(pred, 70.0)


def test_a_board_copy_with_new_modification_times_is_the_same_data_and_a_changed_video_is_not(
    rppg_run, tmp_path: Path
) -> None:
    root, run_dir = rppg_run
    plain = tmp_path / "plain"  # `cp -r` or a fresh download: same bytes, new modification times
    shutil.copytree(root, plain, copy_function=shutil.copyfile)
    client = TestClient(create_app(settings(f"sqlite:///{tmp_path / 'plain.sqlite'}", data_root=plain)))
    assert client.post("/api/submit", content=build_payload(run_dir), headers=auth()).status_code == 201
    changed = tmp_path / "changed"  # one video re-encoded to another size: another dataset
    shutil.copytree(root, changed, copy_function=shutil.copyfile)
    video = next(p for p in sorted(changed.rglob("*")) if p.suffix.lower() in (".avi", ".mp4", ".mkv"))
    with video.open("ab") as f:
        f.write(b"\0" * 16)
    client = TestClient(create_app(settings(f"sqlite:///{tmp_path / 'changed.sqlite'}", data_root=changed)))
    r = client.post("/api/submit", content=build_payload(run_dir), headers=auth())
    assert r.status_code == 422 and "data fingerprint mismatch" in r.json()["reason"]
