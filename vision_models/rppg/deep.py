"""Deep rPPG models (PhysNet, TS-CAN, EfficientPhys, PhysFormer, ...) behind one wrapper.

The user supplies the network: a module, a TorchScript file (or a `torch.export` .pt2 archive), or
a state_dict checkpoint plus a factory that builds the module. Frames are face-cropped (box
enlarged 1.5x, as rPPG-Toolbox does), resized to the model's input size, normalised, cut into
chunks of `chunk_len` frames and run `batch_size` chunks at a time (on CUDA when available).
Frames are streamed: memory holds one batch of chunks.

Normalisations follow rPPG-Toolbox's preprocessing names: "raw", "diff_normalized" ((x[t+1] - x[t])
/ (x[t+1] + x[t]), divided by its std, a zero frame last) and "standardized" ((x - mean) / std).
Several names stack along channels (TS-CAN / DeepPhys use diff_normalized + standardized). The
toolbox takes the statistics over the whole video before chunking; here they are per chunk (the
diff uses the next chunk's first frame, so differences across chunk boundaries are kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DeepBVP", "TorchRppgModel", "normalize_chunk"]

LAYOUTS = ("NCTHW", "NTCHW", "(NT)CHW")  # PhysNet/PhysFormer, some 3D nets, TS-CAN/EfficientPhys


@dataclass
class DeepBVP:
    """Whole-video output: `bvp` [T]; `diff` says whether it is a first difference of the pulse (the
    post-processing integrates it, as the toolbox's diff_flag does)."""

    bvp: np.ndarray
    fps: float
    face_found: np.ndarray
    diff: bool
    info: dict[str, Any] | None = None  # e.g. {"decode_warning": ...} for a slightly short video


def normalize_chunk(frames: np.ndarray, kinds: tuple[str, ...], next_frame: np.ndarray | None = None) -> np.ndarray:
    """[T, H, W, 3] uint8 (+ the following frame, if any) -> [T, H, W, 3 * len(kinds)] float32."""
    x = frames.astype(np.float32)
    parts = []
    for kind in kinds:
        if kind == "raw":
            parts.append(x)
        elif kind == "standardized":
            parts.append((x - x.mean()) / (x.std() + 1e-7))
        elif kind == "diff_normalized":
            nxt = x[1:] if next_frame is None else np.concatenate([x[1:], next_frame[None].astype(np.float32)])
            d = (nxt - x[: len(nxt)]) / (nxt + x[: len(nxt)] + 1e-7)
            d = d / (d.std() + 1e-7)
            if len(d) < len(x):  # the video's last frame: a zero difference, as the toolbox appends
                d = np.concatenate([d, np.zeros_like(x[:1])])
            parts.append(np.nan_to_num(d))
        else:
            raise ValueError(f"unknown normalisation {kind!r}; use raw, diff_normalized or standardized")
    return np.concatenate(parts, axis=-1)


def _load_module(model: Any, factory: Callable[[], Any] | None, device: str) -> Any:
    import torch

    if isinstance(model, torch.nn.Module):
        return model
    path = Path(model)
    if not path.is_file():
        from harness.core import DataError

        raise DataError(f"{path}: no such model checkpoint")
    if factory is None:
        if path.suffix == ".pt2":  # torch.export archive
            return torch.export.load(str(path)).module()
        return torch.jit.load(str(path), map_location=device)
    module = factory()
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    # checkpoints saved from nn.DataParallel (as the toolbox's are) prefix every key with "module."
    state = {k.removeprefix("module."): v for k, v in state.items()}
    module.load_state_dict(state)
    return module


class TorchRppgModel:
    """A user-supplied torch rPPG network applied to chunks of face frames."""

    def __init__(
        self,
        model: Any,
        *,
        factory: Callable[[], Any] | None = None,
        input_size: tuple[int, int] = (72, 72),
        chunk_len: int = 180,
        normalization: str | tuple[str, ...] = "diff_normalized",
        layout: str = "NCTHW",
        batch_size: int = 4,
        device: str | None = None,
        output_is_diff: bool | None = None,
        box_scale: float = 1.5,
    ) -> None:
        import torch

        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.module = _load_module(model, factory, self.device).to(self.device).eval()
        self.input_size = input_size  # (height, width)
        self.chunk_len = chunk_len
        self.kinds = (normalization,) if isinstance(normalization, str) else tuple(normalization)
        self.layout = layout
        self.batch_size = max(1, batch_size)
        # models trained on diff-normalised inputs predict the pulse's first difference
        self.output_is_diff = ("diff_normalized" in self.kinds) if output_is_diff is None else output_is_diff
        self.box_scale = box_scale

    def predict_chunks(self, chunks: np.ndarray) -> np.ndarray:
        """Normalised chunks [N, T, H, W, C] float -> BVP [N, T], run `batch_size` at a time."""
        import torch

        out = []
        for start in range(0, len(chunks), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(chunks[start : start + self.batch_size], dtype=np.float32))
            n, t, h, w, c = batch.shape
            if self.layout == "NCTHW":
                batch = batch.permute(0, 4, 1, 2, 3)
            elif self.layout == "NTCHW":
                batch = batch.permute(0, 1, 4, 2, 3)
            else:
                batch = batch.permute(0, 1, 4, 2, 3).reshape(n * t, c, h, w)
            with torch.inference_mode():
                y = self.module(batch.contiguous().to(self.device))
            if isinstance(y, (tuple, list)):  # PhysNet returns (rppg, features, ...)
                y = y[0]
            if y.numel() != n * t:
                raise ValueError(f"model output {tuple(y.shape)} does not hold one value per frame ({n} x {t})")
            out.append(y.reshape(n, t).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.chunk_len), dtype=np.float32)

    def _chunks(self, frames: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, int]]:
        """Normalised chunks and their number of real frames; the last is padded with its last frame."""
        buf: list[np.ndarray] = []
        for frame in frames:
            buf.append(frame)
            if len(buf) == self.chunk_len + 1:  # one frame of look-ahead for the difference
                yield normalize_chunk(np.stack(buf[:-1]), self.kinds, buf[-1]), self.chunk_len
                buf = buf[-1:]
        if buf:
            n = len(buf)
            pad = [buf[-1]] * (self.chunk_len - n)
            yield normalize_chunk(np.stack(buf + pad), self.kinds), n

    def predict_frames(self, frames: Iterable[np.ndarray]) -> np.ndarray:
        """Model-sized frames [H, W, 3] uint8 (already cropped and resized) -> whole-video BVP [T]."""
        pieces: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        lengths: list[int] = []

        def flush() -> None:
            for y, n in zip(self.predict_chunks(np.stack(batch)), lengths, strict=True):
                pieces.append(y[:n])
            batch.clear()
            lengths.clear()

        for chunk, n in self._chunks(iter(frames)):
            batch.append(chunk)
            lengths.append(n)
            if len(batch) == self.batch_size:
                flush()
        if batch:
            flush()
        return np.concatenate(pieces).astype(np.float64) if pieces else np.zeros(0)

    def predict_video(self, source: Any, *, roi: str = "face", detector: str = "haar", detect_every: int = 10,
                      fps: float | None = None, max_frames: int | None = None) -> DeepBVP:
        """Stream a video (file, frame folder or iterable with `fps`): crop, resize, run the model.

        Frames with no face box (before the first detection, or after the box went stale) repeat the
        previous crop (black before the first) and are marked in `face_found`."""
        from .roi import FaceTracker, load_cv2
        from .video import check_decode, open_frames

        cv2 = load_cv2()

        stream = open_frames(source, fps)
        tracker = FaceTracker(detector, detect_every=detect_every, box_scale=self.box_scale) if roi == "face" else None
        found: list[bool] = []
        h, w = self.input_size

        def crops() -> Iterator[np.ndarray]:
            last = np.zeros((h, w, 3), dtype=np.uint8)
            for i, (_, frame) in enumerate(stream.frames):
                if max_frames is not None and i >= max_frames:
                    break
                box = tracker.update(frame) if tracker is not None else (0, 0, frame.shape[1], frame.shape[0])
                found.append(box is not None)
                if box is not None:
                    last = cv2.resize(frame[box[1] : box[3], box[0] : box[2]], (w, h), interpolation=cv2.INTER_AREA)
                yield last

        bvp = self.predict_frames(crops())
        stopped_early = max_frames is not None and len(found) >= max_frames
        warning = None if stopped_early else check_decode(stream, len(found))  # far too short: DataError
        return DeepBVP(bvp, stream.fps, np.array(found, dtype=bool), self.output_is_diff,
                       {"decode_warning": warning} if warning else {})
