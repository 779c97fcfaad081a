"""Classical rPPG solvers: video -> RGB trace -> method (GREEN, ICA, CHROM, POS, PBV, LGI, OMIT) -> HR.

The method runs on the whole trace; the BVP is then cut into windows and each window post-processed
on its own (rPPG-Toolbox's `unsupervised_predictor.py` order). The prediction keeps the BVP itself so
that `RppgTask.score` can compute SNR and MACC against the reference with the same chain.

Options (`-S key=value`): band (toolbox|recommended), window_s (0 = whole video), hr_method
(fft|peak), roi (face|full; skin-ROI videos always use full), fusion (mean|best-snr, multi-view),
max_frames (decode at most this many frames), detect_every (face detection every N frames),
detector (haar: OpenCV's cascade, the default | lbp: scikit-image's cascade).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from harness.core import JSON, HarnessError, Sample, Solver, SolverOptions
from harness.registry import register_solver
from tasks.rppg.postprocess import band_hz, estimate_hr, preprocess, snr_db, window_bounds

METHOD_NAMES = ("green", "ica", "chrom", "pos", "pbv", "lgi", "omit")
FUSIONS = ("mean", "best-snr")


def _round(x: np.ndarray) -> list[float]:
    """6 significant digits keep samples.jsonl small; every HR is computed from the rounded values."""
    return [float(f"{v:.6g}") for v in np.asarray(x, dtype=np.float64)]


def _nan_to_none(values: list[float]) -> list[float | None]:
    return [v if np.isfinite(v) else None for v in values]


def fill_missing(rgb: np.ndarray) -> np.ndarray:
    """Linearly interpolate frames whose RGB is not finite (no face); error when no frame is usable."""
    rgb = np.asarray(rgb, dtype=np.float64)
    ok = np.all(np.isfinite(rgb), axis=1)
    if ok.all():
        return rgb
    if not ok.any():
        raise HarnessError("no usable frame: the face was not found in any frame")
    t = np.arange(rgb.shape[0])
    return np.stack([np.interp(t, t[ok], rgb[ok, c]) for c in range(3)], axis=1)


def hr_windows(bvp: np.ndarray, fps: float, band: str, window_s: float, hr_method: str) -> dict[str, JSON]:
    """Per-window predicted HR of a BVP trace (each window detrended and band-passed on its own)."""
    bounds = window_bounds(len(bvp), fps, window_s)
    hrs = [estimate_hr(preprocess(bvp[a:b], fps, band), fps, band, hr_method) for a, b in bounds]
    return {"windows": [[a, b] for a, b in bounds], "windows_s": [[a / fps, b / fps] for a, b in bounds],
            "hr_bpm": _nan_to_none(hrs)}


def blind_snr_db(bvp: np.ndarray, fps: float, band: str) -> float:
    """SNR around the signal's own periodogram peak (no reference needed): picks the best view."""
    x = preprocess(bvp, fps, band)
    if not np.any(x):  # a flat view (no signal at all) must never win
        return float("-inf")
    return snr_db(x, estimate_hr(x, fps, band, "fft"), fps, band)


def fuse(views: dict[str, np.ndarray], fps: float, band: str, how: str) -> tuple[np.ndarray, str | None]:
    """Fuse synchronised view BVPs: mean of z-scored signals, or the view with the best blind SNR."""
    n = min(len(v) for v in views.values())
    if how == "best-snr":
        best = max(views, key=lambda k: blind_snr_db(views[k][:n], fps, band))
        return views[best][:n], best
    z = [(v[:n] - v[:n].mean()) / (v[:n].std() or 1.0) for v in views.values()]
    return np.mean(z, axis=0), None


class RppgOptions(SolverOptions):
    band: Literal["toolbox", "recommended"] = Field(
        "toolbox", description="pass band: toolbox 0.6-3.3 Hz (36-198 bpm) or recommended 0.75-2.5 Hz")
    window_s: float = Field(0.0, ge=0, description="HR window in seconds (0: the whole video)")
    hr_method: Literal["fft", "peak"] = Field("fft", description="HR from the periodogram peak or from peak intervals")
    roi: Literal["face", "full"] = Field("face", description="face box or the full frame (skin-ROI videos: full)")
    fusion: Literal["mean", "best-snr"] = Field(
        "mean", description="multi-view: mean of z-scored BVPs, or the view with the best blind SNR")
    max_frames: int | None = Field(None, gt=0, description="decode at most this many frames (None: all)")
    detect_every: int = Field(10, ge=1, description="run face detection every N frames")
    detector: Literal["haar", "lbp"] = Field("haar", description="OpenCV Haar cascade, or scikit-image's LBP cascade")


class RppgSolver(Solver):
    """Classical rPPG method on a face (or skin) RGB trace."""

    method: ClassVar[str] = ""
    Options = RppgOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.options["band_hz"] = list(band_hz(self.options["band"]))  # derived; shown in the manifest

    async def solve(self, sample: Sample) -> JSON:
        return await asyncio.to_thread(self.predict, sample)

    def _trace(self, path: str, roi: str, fps: float | None) -> tuple[np.ndarray, float, float]:
        from vision_models.rppg.trace import extract_rgb_trace

        kwargs: dict[str, Any] = {"roi": roi, "max_frames": self.options["max_frames"]}
        if fps:  # frame folders (PURE) carry their rate in the sample, from the frame timestamps
            kwargs["fps"] = fps
        if roi == "face":
            kwargs["detector"] = self.options["detector"]
            kwargs["detect_every"] = self.options["detect_every"]
        trace = extract_rgb_trace(path, **kwargs)
        return fill_missing(trace.rgb), float(trace.fps), float(trace.face_missing_fraction)

    def _view_bvp(self, path: str, roi: str, fps_hint: float | None) -> tuple[np.ndarray, float, float]:
        """BVP, frame rate and face-missing fraction of one video."""
        from vision_models.rppg.methods import METHODS

        rgb, fps, missing = self._trace(path, roi, fps_hint)
        fps = fps if fps > 0 else float(fps_hint or 0)
        if fps <= 0:
            raise HarnessError(f"{path}: unknown frame rate")
        return METHODS[self.method](rgb, fps), fps, missing

    def predict(self, sample: Sample) -> dict[str, JSON]:
        """Synchronous prediction for one video or multi-view recording."""
        o = self.options
        sources = sample.inputs.get("views") or {"video": sample.inputs["video"]}
        roi = "full" if sample.inputs.get("skin_roi") else o["roi"]
        bvps, missing, fps_seen = {}, {}, []
        for view, path in sources.items():
            bvp, fps, missing[view] = self._view_bvp(path, roi, sample.inputs.get("fps"))
            fps_seen.append(fps)
            bvps[view] = np.asarray(_round(bvp))
        fps = float(np.mean(fps_seen))
        if max(fps_seen) - min(fps_seen) > 0.01 * fps:
            raise HarnessError(f"{sample.id}: views differ in frame rate ({fps_seen}); cannot fuse")
        multi = "views" in sample.inputs
        bvp, selected = fuse(bvps, fps, o["band"], o["fusion"]) if multi else (bvps["video"], None)
        bvp = np.asarray(_round(bvp))
        pred: dict[str, JSON] = {
            "method": self.method, "fps": fps, "n_frames": len(bvp), "roi": roi,
            **{k: o[k] for k in ("band", "band_hz", "window_s", "hr_method")},
            **hr_windows(bvp, fps, o["band"], o["window_s"], o["hr_method"]),
            "face_missing_fraction": float(np.mean(list(missing.values()))),
            "bvp": _round(bvp),
        }
        if multi:
            pred["fusion"], pred["selected_view"] = o["fusion"], selected
            pred["views"] = {
                v: {"face_missing_fraction": missing[v],
                    "blind_snr_db": _nan_to_none([blind_snr_db(b, fps, o["band"])])[0],
                    **hr_windows(b, fps, o["band"], o["window_s"], o["hr_method"]), "bvp": _round(b)}
                for v, b in bvps.items()}
        return pred


def _make(method: str) -> type[RppgSolver]:
    cls = type(f"{method.upper()}Solver", (RppgSolver,), {
        "method": method, "__doc__": f"{method.upper()} classical rPPG on a face/skin RGB trace (rPPG-Toolbox chain)",
        "__module__": __name__})
    return register_solver(method, tasks=("rppg",), kind="classical")(cls)


SOLVERS: dict[str, type[RppgSolver]] = {m: _make(m) for m in METHOD_NAMES}


class DeepRppgOptions(RppgOptions):
    checkpoint: str = Field("", description="TorchScript or torch.export (.pt2) file of the network (required)")
    input_size: int = Field(72, gt=0, description="square face-crop size in pixels")
    chunk_len: int = Field(180, gt=0, description="frames per network input chunk")
    normalization: str = Field(
        "diff_normalized", description="diff_normalized | standardized | raw, '+'-joined to stack channels")
    layout: Literal["NCTHW", "NTCHW", "(NT)CHW"] = Field("NCTHW", description="input tensor layout of the network")
    batch_size: int = Field(4, gt=0, description="chunks per forward pass")
    device: str | None = Field(None, exclude=True, description="torch device (default: cuda if available); "
                               "not part of the identity")


@register_solver("deep", tasks=("rppg",), kind="vision",
                 description="a user's torch rPPG network (PhysNet, TS-CAN, ...) from -S checkpoint=PATH")
class DeepRppgSolver(RppgSolver):
    """A user-supplied deep rPPG model (TorchScript / torch.export file) on face crops, batched on the GPU.

    Options besides the classical ones: checkpoint (path, required), input_size (pixels, square; 72),
    chunk_len (frames; 180), normalization (diff_normalized | standardized | raw, '+'-joined to stack;
    diff_normalized), layout (NCTHW | NTCHW | (NT)CHW), batch_size (chunks per forward pass; 4), device.
    A model fed diff-normalised frames predicts the pulse's first difference, which is integrated
    (the toolbox's diff_flag) before the shared post-processing."""

    method = "deep"

    Options = DeepRppgOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not self.options["checkpoint"]:
            raise HarnessError("solver 'deep' needs -S checkpoint=PATH (a TorchScript or .pt2 file)")
        self._device = self.opts.device  # type: ignore[attr-defined]  # not in `options`: no identity change
        self._model: Any = None
        self._lock = threading.Lock()

    def model(self) -> Any:
        with self._lock:  # one copy of the network, shared by the worker threads
            if self._model is None:
                from vision_models.rppg.deep import TorchRppgModel

                o = self.options
                self._model = TorchRppgModel(
                    o["checkpoint"], input_size=(o["input_size"], o["input_size"]), chunk_len=o["chunk_len"],
                    normalization=tuple(o["normalization"].split("+")), layout=o["layout"],
                    batch_size=o["batch_size"], device=self._device)
            return self._model

    def _view_bvp(self, path: str, roi: str, fps_hint: float | None) -> tuple[np.ndarray, float, float]:
        kwargs: dict[str, Any] = {"roi": roi, "max_frames": self.options["max_frames"], "fps": fps_hint,
                                  "detector": self.options["detector"], "detect_every": self.options["detect_every"]}
        out = self.model().predict_video(path, **kwargs)
        fps = float(out.fps or fps_hint or 0)
        if fps <= 0:
            raise HarnessError(f"{path}: unknown frame rate")
        bvp = np.cumsum(out.bvp) if out.diff else out.bvp
        return bvp, fps, float(1.0 - out.face_found.mean()) if len(out.face_found) else 1.0
