"""`--solver deep`: a user's TorchScript rPPG network runs through the task's chain from the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_data_path

from harness.cli import main

torch = pytest.importorskip("torch")


class Tiny3D(torch.nn.Module):
    """[N, C, T, H, W] -> [N, T]: a 3D conv, spatial mean, a temporal conv (random weights)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(3, 4, kernel_size=3, padding=1)
        self.head = torch.nn.Conv1d(4, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(3, 4))).squeeze(1)


def test_deep_solver_runs_a_torchscript_checkpoint_end_to_end(tmp_path, capsys):
    data = shared_data_path("rppg_bias_eval_roi")
    ckpt = tmp_path / "tiny.pt"
    torch.jit.script(Tiny3D()).save(str(ckpt))
    out = tmp_path / "runs"
    args = ["run", "--task", "rppg", "--protocol", "roi", "--solver", "deep", "-S", f"checkpoint={ckpt}",
            "-S", "input_size=16", "-S", "chunk_len=30", "-S", "batch_size=2", "--limit", "2",
            "--data", str(data), "--out", str(out), "--bootstrap", "20", "--no-progress"]
    assert main(args) == 0
    run_dir = next(p for p in out.iterdir() if p.is_dir())
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["error"] is None for r in rows)
    for r in rows:
        pred = r["prediction"]
        assert pred["method"] == "deep" and pred["n_frames"] == len(pred["bvp"]) > 30
        hr = pred["hr_bpm"][0]
        lo, hi = (60 * f for f in pred["band_hz"])
        assert lo <= hr <= hi  # a random network still yields an HR inside the band
        assert np.isfinite(r["scores"]["abs_err"][0])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["solver_config"]["options"]["checkpoint"] == str(ckpt)


def test_deep_solver_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    data = shared_data_path("rppg_bias_eval_roi")
    assert main(["run", "--task", "rppg", "--protocol", "roi", "--solver", "deep", "--data", str(data),
                 "--out", str(tmp_path)]) == 2
    assert "checkpoint=PATH" in capsys.readouterr().err
