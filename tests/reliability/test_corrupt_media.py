"""Corrupt media (zero bytes, garbage, a truncated file) are that sample's error naming the file, or
decode short with a warning; never a crashed run, never a silently wrong number (issue 9, the suite).

Two paths read media: an MLLM solver sending a clip's frames (sarcasm with `utterances_final/<id>.mp4`,
through the fault server), and a video solver (rPPG POS on the ROI layout).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from tests.conftest import shared_data_path
from tests.servers.faulty_openai import FaultyServer


def corrupt(path: Path, how: str, good: bytes) -> None:
    if how == "zero":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"\x00garbage, not a video\xff" * 50)
    else:  # truncated to a third
        path.write_bytes(good[: len(good) // 3])


def last_run(out: Path) -> tuple[dict, list[dict]]:
    run = max((p for p in out.iterdir() if (p / "metrics.json").exists()), key=lambda p: p.stat().st_mtime)
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    return json.loads((run / "metrics.json").read_text()), samples


def test_mllm_clips_that_cannot_be_decoded_are_per_sample_errors(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from tasks.motor.fixture import write_video
    from tasks.sarcasm import bundled, loader
    from tasks.sarcasm.task import SarcasmTask

    data = tmp_path / "mustard"
    data.mkdir()
    for name in (loader.ANNOTATIONS_FILE, loader.DERIVED_SPLIT_FILE):
        shutil.copy(bundled.BUNDLED_DIR / name, data / name)
    first_ids = [fold.test[0].id for fold in SarcasmTask().folds(data, "speaker-dependent")]  # --limit 1
    clips = data / "utterances_final"
    clips.mkdir()
    write_video(clips / "good.mp4", (200, 120, 90), n_frames=12)
    good = (clips / "good.mp4").read_bytes()
    plan = dict(zip(first_ids, ["zero", "garbage", "truncated", "ok", "ok"], strict=True))
    for sample_id, how in plan.items():
        (clips / f"{sample_id}.mp4").write_bytes(good)
        if how != "ok":
            corrupt(clips / f"{sample_id}.mp4", how, good)
    out = tmp_path / "runs"
    with FaultyServer("ok") as srv:
        code = main(["run", "--task", "sarcasm", "--data", str(data), "--model", "faulty", "--base-url", srv.base_url,
                     "-S", "frames=2", "--limit", "1", "--out", str(out), "--no-progress", "--bootstrap", "20"])
    assert code == 0
    metrics, samples = last_run(out)
    by_id = {s["sample_id"]: s for s in samples}
    for sample_id, how in plan.items():
        record = by_id[sample_id]
        if how == "ok":
            assert record["error"] is None and record["prediction"] is True
        else:  # undecodable or truncated: this sample's error, naming the clip (frame sampling has no
            # short-decode warning: a truncated clip's missing frames are never replaced by earlier ones)
            assert record["error"] is not None and f"{sample_id}.mp4" in record["error"], record
    assert metrics["n_errors"] == 3


@pytest.mark.parametrize("how", ["zero", "garbage", "truncated"])
def test_rppg_videos_that_cannot_be_decoded_are_per_sample_errors_or_warnings(tmp_path: Path, how: str) -> None:
    pytest.importorskip("cv2")
    source = shared_data_path("rppg_bias_eval_roi")
    data = tmp_path / "roi"
    shutil.copytree(source, data, symlinks=False)
    victim = data / "Data" / "India" / "video1_forehead.avi"
    good = victim.read_bytes()
    victim.unlink()
    corrupt(victim, how, good)
    out = tmp_path / "runs"
    code = main(["run", "--task", "rppg", "--solver", "pos", "--data", str(data), "--out", str(out), "--no-progress",
                 "--bootstrap", "20", "--no-cache"])
    assert code == 0  # one bad video never kills the run
    metrics, samples = last_run(out)
    (record,) = [s for s in samples if s["sample_id"].endswith("video1/forehead")]
    others = [s for s in samples if s is not record]
    assert others and all(s["error"] is None for s in others)
    if record["error"] is not None:
        assert "video1_forehead.avi" in record["error"]
        assert metrics["n_errors"] == 1
    else:  # decoded short: a warning in the sample's info, counted by nobody as a clean sample
        assert how == "truncated"
        assert any("short" in str(v).lower() or "frames" in str(v).lower()
                   for k, v in record["info"].items() if "warn" in k.lower() or "decode" in k.lower()), record["info"]
