"""Classical rPPG solvers: video -> RGB trace -> method (GREEN, ICA, CHROM, POS, PBV, LGI, OMIT) -> HR.

The method runs on the whole trace; the BVP is then cut into windows and each window post-processed
on its own (rPPG-Toolbox's `unsupervised_predictor.py` order). The prediction keeps the BVP itself,
in full float64 precision (JSON floats round-trip exactly), so that `RppgTask.score` recomputes SNR,
MACC and the reference HR with the same chain and gets the same HRs as the prediction.

Options are declared in `RppgOptions` (`harness solvers --task rppg` prints them). `impl=toolbox` and
`crop=toolbox` reproduce rPPG-Toolbox's POS/CHROM and its face crop exactly; the defaults
(`impl=harness`, `crop=tracked`) are documented in README.md ("rPPG") with the reasons.

Videos are processed in worker processes (`ProcessPoolExecutor`) when the run's --concurrency allows
more than one at a time: the work is Python + numpy + OpenCV per frame, and threads of one process
share the GIL. The runner stays asyncio; each solve awaits its process. The pool starts when the
solver is created (`create`), from a forkserver that imported the rPPG modules once (`worker_pool`).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from harness.core import JSON, HarnessError, RunContext, Sample, Solver, SolverOptions, SolverOutput, Task
from harness.registry import register_solver
from tasks.rppg.postprocess import band_hz, estimate_hr, preprocess, snr_db, window_bounds

METHOD_NAMES = ("green", "ica", "chrom", "pos", "pbv", "lgi", "omit")
FUSIONS = ("mean", "best-snr")


def full_precision(x: np.ndarray) -> list[float]:
    """float64 values as JSON floats (Python's repr round-trips them exactly: no rounding)."""
    return np.asarray(x, dtype=np.float64).tolist()


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


def hr_windows(bvp: np.ndarray, fps: float, band: str, window_s: float, hr_method: str,
               video_frames: int | None = None) -> dict[str, JSON]:
    """Per-window predicted HR of a BVP trace (each window detrended and band-passed on its own);
    `video_frames` sizes the windows as the toolbox does for a BVP shorter than the video."""
    bounds = window_bounds(len(bvp), fps, window_s, video_frames=video_frames)
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
    """`-S` options of the classical rPPG solvers."""

    band: Literal["toolbox", "recommended"] = Field(
        "toolbox", description="post-processing band: toolbox 0.6-3.3 Hz, recommended 0.75-2.5 Hz")
    window_s: float = Field(0.0, ge=0, description="HR window in seconds (0: the whole video)")
    hr_method: Literal["fft", "peak"] = Field("fft", description="HR from the periodogram peak or peak intervals")
    roi: Literal["face", "full"] = Field("face", description="face box, or the whole frame (skin-ROI videos: full)")
    crop: Literal["tracked", "toolbox"] = Field(
        "tracked", description="tracked face box, or rPPG-Toolbox's: first-frame box x1.5, resized to 72x72")
    detector: Literal["haar", "lbp"] = Field("haar", description="face detector: OpenCV Haar or scikit-image LBP")
    detect_every: int = Field(10, ge=1, description="face detection every N frames (crop=tracked)")
    impl: Literal["harness", "toolbox"] = Field(
        "harness", description="POS/CHROM windows: harness (every full window, T samples) or toolbox (exact)")
    fusion: Literal["mean", "best-snr"] = Field("mean", description="multi-view fusion")
    max_frames: int | None = Field(None, gt=0, description="decode at most this many frames")


def _inside_ray_worker() -> bool:
    import sys

    ray = sys.modules.get("ray")
    try:
        return ray is not None and ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
    except Exception:  # noqa: BLE001 - any doubt: not inside Ray
        return False


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_WORKER_SOLVERS: dict[tuple[str, str], RppgSolver] = {}
_POOLS: dict[int, ProcessPoolExecutor] = {}  # one pool per process and size, shared by solver instances
_POOLS_LOCK = threading.Lock()


def _noop() -> None:
    return None


WORKER_PRELOAD = ["tasks.rppg.solvers", "vision_models.rppg.trace", "av", "cv2"]


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The shared pool of `workers` processes, started now. Workers come from a forkserver that has
    imported `WORKER_PRELOAD` once: clean processes (a plain fork of a process whose OpenCV thread
    pool has run can hang in cv2), started in milliseconds with everything imported."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if ctx.get_start_method() == "forkserver":
                ctx.set_forkserver_preload(WORKER_PRELOAD)
            pool = _POOLS[workers] = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            for _ in range(workers):  # start the forkserver and the workers now, while the runner sets up
                pool.submit(_noop)
        return pool


def close_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def _predict_in_worker(method: str, options: dict[str, JSON], sample: Sample) -> tuple[dict, dict]:
    """Entry point in a worker process: one solver per (method, options), kept between samples."""
    import json

    key = (method, json.dumps(options, sort_keys=True))
    solver = _WORKER_SOLVERS.get(key)
    if solver is None:
        from vision_models.rppg.roi import load_cv2

        load_cv2().setNumThreads(1)  # the processes are the parallelism; OpenCV's own threads only add waits
        solver = _WORKER_SOLVERS[key] = SOLVERS[method](**options)
    return solver.predict_with_info(sample)


class RppgSolver(Solver):
    """Classical rPPG method on a face (or skin) RGB trace."""

    method: ClassVar[str] = ""
    version: ClassVar[str] = "2"  # 2: full-precision BVPs, tracked detection near the face, short-decode check
    Options: ClassVar[type[SolverOptions]] = RppgOptions
    use_processes: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.workers = 1
        self._pool: ProcessPoolExecutor | None = None
        if self.options.get("roi") == "face":  # import OpenCV here, in the main thread (see roi.load_cv2)
            from vision_models.rppg.roi import make_detector

            make_detector(self.options.get("detector", "haar"))  # fails early without Haar cascades

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> Solver:
        solver = cls(**options)
        # One video per worker process, at most --concurrency at once. One worker more than CPUs: a
        # video's decoder thread leaves part of a core idle, and 3 videos on 2 cores then finish in
        # ~1.5 video-times instead of 2 (two, then one alone).
        workers = min(int(ctx.concurrency), usable_cpus() + 1) if cls.use_processes else 1
        if workers > 1 and not _inside_ray_worker():  # a Ray actor is already one of many processes
            solver.workers, solver._pool = workers, worker_pool(workers)
        return solver

    async def solve(self, sample: Sample) -> SolverOutput:
        from tasks.rppg.loaders import check_target

        check_target(sample.target)  # an invalid reference fails the sample before its video is decoded
        if self._pool is not None:
            loop = asyncio.get_running_loop()
            pred, info = await loop.run_in_executor(self._pool, _predict_in_worker, self.method, self.options, sample)
        else:
            pred, info = await asyncio.to_thread(self.predict_with_info, sample)
        return SolverOutput(pred, info=info)

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool = None
            await asyncio.to_thread(close_pools)

    def _trace(self, path: str, roi: str, fps: float | None) -> tuple[np.ndarray, float, float, dict]:
        from vision_models.rppg.trace import extract_rgb_trace

        o = self.options
        kwargs: dict[str, Any] = {"roi": roi, "max_frames": o["max_frames"]}
        if fps:  # frame folders (PURE) carry their rate in the sample, from the frame timestamps
            kwargs["fps"] = fps
        if roi == "face":
            kwargs.update(detector=o["detector"], detect_every=o["detect_every"], crop=o["crop"])
        trace = extract_rgb_trace(path, **kwargs)
        return fill_missing(trace.rgb), float(trace.fps), float(trace.face_missing_fraction), trace.info

    def _view_bvp(self, path: str, roi: str, fps_hint: float | None) -> tuple[np.ndarray, float, float, int, dict]:
        """BVP, frame rate, face-missing fraction, frames and trace info of one video."""
        from vision_models.rppg.methods import run_method

        rgb, fps, missing, info = self._trace(path, roi, fps_hint)
        fps = fps if fps > 0 else float(fps_hint or 0)
        if fps <= 0:
            raise HarnessError(f"{path}: unknown frame rate")
        return run_method(self.method, rgb, fps, self.options["impl"]), fps, missing, len(rgb), info

    def predict(self, sample: Sample) -> dict[str, JSON]:
        """Synchronous prediction for one video or multi-view recording."""
        return self.predict_with_info(sample)[0]

    def predict_with_info(self, sample: Sample) -> tuple[dict[str, JSON], dict[str, JSON]]:
        """(prediction, info): info holds per-view decode warnings and face-detection counts."""
        o = self.options
        sources = sample.inputs.get("views") or {"video": sample.inputs["video"]}
        roi = "full" if sample.inputs.get("skin_roi") else o["roi"]
        bvps, missing, fps_seen, frames, info = {}, {}, [], {}, {}
        fps_hint = sample.inputs.get("fps")
        for view, path in sources.items():
            bvps[view], fps, missing[view], frames[view], info[view] = self._view_bvp(path, roi, fps_hint)
            fps_seen.append(fps)
        fps = float(np.mean(fps_seen))
        if max(fps_seen) - min(fps_seen) > 0.01 * fps:
            raise HarnessError(f"{sample.id}: views differ in frame rate ({fps_seen}); cannot fuse")
        multi = "views" in sample.inputs
        bvp, selected = fuse(bvps, fps, o["band"], o["fusion"]) if multi else (bvps["video"], None)
        n_frames = min(frames.values())
        toolbox = o["impl"] == "toolbox"
        video_frames = n_frames if toolbox else None
        pred: dict[str, JSON] = {
            "method": self.method, "impl": o["impl"], "crop": o["crop"] if roi == "face" else None,
            "windowing": "toolbox" if toolbox else "same", "fps": fps, "n_frames": n_frames, "roi": roi,
            "band": o["band"], "band_hz": list(band_hz(o["band"])), "window_s": o["window_s"],
            "hr_method": o["hr_method"],
            **hr_windows(bvp, fps, o["band"], o["window_s"], o["hr_method"], video_frames),
            "face_missing_fraction": float(np.mean(list(missing.values()))),
            "bvp": full_precision(bvp),
        }
        if multi:
            pred["fusion"], pred["selected_view"] = o["fusion"], selected
            pred["views"] = {
                v: {"face_missing_fraction": missing[v],
                    "blind_snr_db": _nan_to_none([blind_snr_db(b, fps, o["band"])])[0],
                    **hr_windows(b, fps, o["band"], o["window_s"], o["hr_method"], video_frames),
                    "bvp": full_precision(b)}
                for v, b in bvps.items()}
        warnings = [i["decode_warning"] for i in info.values() if i.get("decode_warning")]
        out_info: dict[str, JSON] = {"trace": info if multi else info["video"]}
        if warnings:
            out_info["decode_warning"] = "; ".join(str(w) for w in warnings)
        return pred, out_info


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

    @model_validator(mode="after")
    def _classical_only(self) -> DeepRppgOptions:
        if self.crop != "tracked" or self.impl != "harness":
            raise ValueError("crop and impl apply to the classical methods only (the deep model crops its own "
                             "1.5x tracked face box)")
        return self


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
    use_processes = False  # one copy of the network on the GPU, shared by threads

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

    def _view_bvp(self, path: str, roi: str, fps_hint: float | None) -> tuple[np.ndarray, float, float, int, dict]:
        kwargs: dict[str, Any] = {"roi": roi, "max_frames": self.options["max_frames"], "fps": fps_hint,
                                  "detector": self.options["detector"], "detect_every": self.options["detect_every"]}
        out = self.model().predict_video(path, **kwargs)
        fps = float(out.fps or fps_hint or 0)
        if fps <= 0:
            raise HarnessError(f"{path}: unknown frame rate")
        bvp = np.cumsum(out.bvp) if out.diff else out.bvp
        missing = float(1.0 - out.face_found.mean()) if len(out.face_found) else 1.0
        return bvp, fps, missing, len(bvp), dict(out.info or {})
