"""Deep rPPG wrapper: chunk shapes and layouts, batching equals unbatched, chunks cover the whole
video, checkpoints (TorchScript, DataParallel state_dict), streaming over a face video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vision_models.rppg.deep import TorchRppgModel, normalize_chunk  # noqa: E402
from vision_models.rppg.synthetic import make_pulse_video  # noqa: E402


class Tiny3D(torch.nn.Module):
    """[N, C, T, H, W] -> [N, T]: a 3D conv, spatial mean, a temporal conv."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(channels, 4, kernel_size=3, padding=1)
        self.head = torch.nn.Conv1d(4, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(3, 4))).squeeze(1)


class FrameMean(torch.nn.Module):
    """[N*T, C, H, W] -> [N*T, 1]: the mean of each frame (shows which frame landed where)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))[:, None]


def _frames(n: int, size: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_predict_chunks_shape_is_one_value_per_frame() -> None:
    model = TorchRppgModel(Tiny3D(), input_size=(16, 16), chunk_len=8, normalization="raw", device="cpu")
    chunks = np.random.default_rng(0).normal(size=(5, 8, 16, 16, 3)).astype(np.float32)
    assert model.predict_chunks(chunks).shape == (5, 8)


def test_batched_output_equals_unbatched() -> None:
    frames = _frames(100)
    outs = [
        TorchRppgModel(Tiny3D(), input_size=(16, 16), chunk_len=16, batch_size=b, device="cpu").predict_frames(frames)
        for b in (1, 3, 8)
    ]
    assert outs[0].shape == (100,)
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-5)
    np.testing.assert_allclose(outs[2], outs[0], atol=1e-5)


def test_chunks_cover_the_whole_video_in_order() -> None:
    frames = _frames(53)  # 3 full chunks of 16 and a partial one of 5
    model = TorchRppgModel(FrameMean(), input_size=(16, 16), chunk_len=16, normalization="raw",
                           layout="(NT)CHW", batch_size=2, device="cpu")
    bvp = model.predict_frames(frames)
    np.testing.assert_allclose(bvp, [f.astype(np.float64).mean() for f in frames], rtol=1e-6)


def test_diff_normalized_follows_the_toolbox_formula_and_spans_chunk_boundaries() -> None:
    frames = np.stack(_frames(9)).astype(np.float64)
    kinds = ("diff_normalized", "standardized")
    chunk = normalize_chunk(frames[:8].astype(np.uint8), kinds, frames[8].astype(np.uint8))
    d = (frames[1:] - frames[:-1]) / (frames[1:] + frames[:-1] + 1e-7)
    np.testing.assert_allclose(chunk[..., :3], d / d.std(), rtol=1e-4, atol=1e-4)
    x = frames[:8]
    np.testing.assert_allclose(chunk[..., 3:], (x - x.mean()) / x.std(), rtol=1e-4, atol=1e-4)
    last = normalize_chunk(frames[:8].astype(np.uint8), ("diff_normalized",))
    assert last.shape == (8, 16, 16, 3) and np.all(last[-1] == 0)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch >= 2.10 deprecates TorchScript; still loadable
def test_checkpoints_torchscript_and_dataparallel_state_dict(tmp_path: Path) -> None:
    frames = _frames(40)
    reference = TorchRppgModel(Tiny3D(), input_size=(16, 16), chunk_len=20, device="cpu").predict_frames(frames)
    script = tmp_path / "tiny.pt"
    torch.jit.script(Tiny3D()).save(str(script))
    scripted = TorchRppgModel(script, input_size=(16, 16), chunk_len=20, device="cpu").predict_frames(frames)
    np.testing.assert_allclose(scripted, reference, atol=1e-6)
    state = tmp_path / "tiny_state.pth"
    torch.save({f"module.{k}": v for k, v in Tiny3D().state_dict().items()}, state)
    loaded = TorchRppgModel(state, factory=Tiny3D, input_size=(16, 16), chunk_len=20, device="cpu")
    np.testing.assert_allclose(loaded.predict_frames(frames), reference, atol=1e-6)


def test_predict_video_streams_face_crops(tmp_path: Path) -> None:
    video = make_pulse_video(tmp_path / "face.mkv", 72, 2.0, size=(160, 120))
    model = TorchRppgModel(Tiny3D(), input_size=(24, 24), chunk_len=25, batch_size=2, device="cpu")
    out = model.predict_video(video.path, detect_every=10)
    assert out.bvp.shape == (60,) and out.face_found.all() and out.fps == pytest.approx(30.0)
    assert out.diff and np.isfinite(out.bvp).all()


@pytest.mark.gpu
def test_runs_on_cuda_and_matches_cpu() -> None:
    frames = _frames(70, size=32)
    cpu = TorchRppgModel(Tiny3D(), input_size=(32, 32), chunk_len=32, device="cpu").predict_frames(frames)
    gpu = TorchRppgModel(Tiny3D(), input_size=(32, 32), chunk_len=32, batch_size=4, device="cuda")
    assert next(gpu.module.parameters()).is_cuda
    np.testing.assert_allclose(gpu.predict_frames(frames), cpu, atol=1e-3)


def test_short_videos_are_reported_or_refused(tmp_path: Path) -> None:
    from harness.core import DataError

    raw = make_pulse_video(tmp_path / "raw.avi", 72, 4.0, size=(64, 48), face=False, codec="rawvideo").path
    data = raw.read_bytes()
    model = TorchRppgModel(Tiny3D(), input_size=(16, 16), chunk_len=30, device="cpu")
    (tmp_path / "short.avi").write_bytes(data[: int(len(data) * 0.95)])
    out = model.predict_video(tmp_path / "short.avi", roi="full")
    assert "of 120 frames" in out.info["decode_warning"] and len(out.bvp) < 120
    assert model.predict_video(raw, roi="full").info == {}
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=r"cut.avi: decoded \d+ of 120 frames"):
        model.predict_video(tmp_path / "cut.avi", roi="full")
