"""Synthetic face videos with a known pulse, for tests and benchmarks.

A face (the astronaut image shipped with scikit-image) is pasted on a smooth background; its skin
pixels (YCrCb mask) are modulated by a pulse with a second harmonic and a realistic relative
amplitude (default 0.6 % in green, weaker in red and blue: de Haan & van Leest's signature
0.33 : 0.77 : 0.53). The scene is lit by a static left-to-right light gradient, so translation
motion changes the face's brightness as it does in real videos; optional slow global illumination
drift and Gaussian sensor noise. Videos are written losslessly (FFV1) by default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SyntheticVideo", "make_pulse_video", "pulse_frames", "write_pure_subject", "write_ubfc_subject"]

PBV_SIGNATURE = np.array([0.33, 0.77, 0.53]) / 0.77  # relative pulse amplitude R, G, B (green = 1)
_FACE_CROP = (slice(10, 270), slice(115, 335))  # astronaut rows, cols: face (Haar box 177..272, 66..161) + hair


@dataclass
class SyntheticVideo:
    """A written synthetic video: `ppg` [T] is the relative skin-intensity pulse per frame."""

    path: Path
    ppg: np.ndarray
    fps: float
    hr_bpm: float

    @property
    def timestamps(self) -> np.ndarray:
        return np.arange(len(self.ppg)) / self.fps


def pulse_waveform(t: np.ndarray, hr_bpm: float) -> np.ndarray:
    """A PPG-like waveform of unit peak: fundamental plus a weaker, phase-shifted second harmonic."""
    w = 2 * np.pi * hr_bpm / 60.0 * t
    p = np.sin(w) + 0.4 * np.sin(2 * w + 0.9)
    return p / np.abs(p).max()


def _scene(size: tuple[int, int], face: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    import cv2

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.stack([70 + 40 * yy / h, 90 + 30 * xx / w, 120 + 20 * yy / h], axis=-1).astype(np.float32)
    if not face:
        return bg, None, None
    from skimage.data import astronaut

    crop = np.ascontiguousarray(astronaut()[_FACE_CROP])
    scale = 0.8 * h / crop.shape[0]
    fw, fh = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    crop = cv2.resize(crop, (fw, fh), interpolation=cv2.INTER_AREA)
    ycrcb = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb)
    skin = cv2.inRange(ycrcb, (0, 133, 77), (255, 173, 127)).astype(np.float32) / 255.0
    return bg, crop.astype(np.float32), skin[..., None]


def pulse_frames(
    hr_bpm: float,
    seconds: float,
    fps: float = 30.0,
    size: tuple[int, int] = (320, 240),
    motion_px: float = 0.0,
    illumination_drift: float = 0.0,
    noise_std: float = 0.0,
    seed: int = 0,
    face: bool = True,
    amplitude: float = 0.006,
) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """The pulse [T] and a generator of the RGB uint8 frames [H, W, 3] (one at a time).

    motion: the face translates by up to `motion_px` (0.2 Hz horizontally, 0.13 Hz vertically).
    illumination: global gain 1 + drift * (t / seconds) + drift / 2 * sin(2 pi 0.1 t)."""
    n = int(round(seconds * fps))
    t = np.arange(n) / fps
    ppg = pulse_waveform(t, hr_bpm)
    w, h = size
    bg, crop, skin = _scene(size, face)
    light = (0.8 + 0.4 * np.arange(w, dtype=np.float32) / w)[None, :, None]  # static light gradient
    gain = 1 + illumination_drift * (t / max(seconds, 1e-9)) + illumination_drift / 2 * np.sin(2 * np.pi * 0.1 * t)
    dx = np.round(motion_px * np.sin(2 * np.pi * 0.2 * t)).astype(int)
    dy = np.round(0.5 * motion_px * np.sin(2 * np.pi * 0.13 * t + 1.0)).astype(int)
    rng = np.random.default_rng(seed)

    def frames() -> Iterator[np.ndarray]:
        for i in range(n):
            img = bg.copy()
            if crop is not None and skin is not None:
                fh, fw = crop.shape[:2]
                x0, y0 = (w - fw) // 2 + dx[i], (h - fh) // 2 + dy[i]
                xs0, ys0, xs1, ys1 = max(0, x0), max(0, y0), min(w, x0 + fw), min(h, y0 + fh)
                part = crop[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0]
                mod = 1 + skin[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0] * (amplitude * ppg[i] * PBV_SIGNATURE)
                img[ys0:ys1, xs0:xs1] = part * mod
            img *= light * np.float32(gain[i])
            if noise_std > 0:
                img += rng.normal(0.0, noise_std, img.shape).astype(np.float32)
            yield np.clip(np.rint(img), 0, 255).astype(np.uint8)

    return ppg, frames()


def _write_video(path: Path, frames: Iterator[np.ndarray], fps: float, size: tuple[int, int], codec: str) -> None:
    from fractions import Fraction

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = size
        if codec == "ffv1":
            stream.pix_fmt = "bgr0"  # lossless RGB
        elif codec == "rawvideo":
            stream.pix_fmt = "bgr24"  # uncompressed, as UBFC-rPPG
        else:
            stream.pix_fmt = "yuvj444p"
            stream.options = {"qscale": "2"}
            stream.codec_context.qmin, stream.codec_context.qmax = 1, 2
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_pulse_video(
    path: str | Path,
    hr_bpm: float,
    seconds: float,
    fps: float = 30.0,
    size: tuple[int, int] = (320, 240),
    motion_px: float = 0.0,
    illumination_drift: float = 0.0,
    noise_std: float = 0.0,
    seed: int = 0,
    face: bool = True,
    amplitude: float = 0.006,
    codec: str = "ffv1",
) -> SyntheticVideo:
    """Write a synthetic pulse video (`codec` ffv1 = lossless, rawvideo = uncompressed, mjpeg = high
    quality) and return its ground truth. Frames are generated and encoded one at a time."""
    path = Path(path)
    ppg, frames = pulse_frames(hr_bpm, seconds, fps, size, motion_px, illumination_drift, noise_std, seed,
                               face, amplitude)
    _write_video(path, frames, fps, size, codec)
    return SyntheticVideo(path, ppg, float(fps), float(hr_bpm))


def write_ubfc_subject(folder: str | Path, hr_bpm: float = 72.0, seconds: float = 10.0, fps: float = 30.0,
                       size: tuple[int, int] = (320, 240), **kwargs: float | int | bool | str) -> SyntheticVideo:
    """UBFC-rPPG DATASET_2 layout: `folder/vid.avi` + `folder/ground_truth.txt` (line 1 PPG, line 2 HR
    in bpm, line 3 timestamps in seconds; one value per frame, scientific notation)."""
    folder = Path(folder)
    video = make_pulse_video(folder / "vid.avi", hr_bpm, seconds, fps, size, **kwargs)  # type: ignore[arg-type]
    n = len(video.ppg)
    lines = [video.ppg, np.full(n, float(hr_bpm)), video.timestamps]
    text = "\n".join(" ".join(f"{v:.7e}" for v in line) for line in lines) + "\n"
    (folder / "ground_truth.txt").write_text(text)
    return video


def write_pure_subject(root: str | Path, name: str = "01-01", hr_bpm: float = 72.0, seconds: float = 5.0,
                       fps: float = 30.0, size: tuple[int, int] = (320, 240), nested: bool = False,
                       start_ns: int = 1_392_643_993_642_815_000,
                       **kwargs: float | int | bool) -> SyntheticVideo:
    """PURE layout: `root/<name>/Image<timestamp_ns>.png` frames and `root/<name>.json` with
    "/FullPackage" (60 Hz pulse oximeter: waveform, pulseRate, o2saturation, signalStrength) and
    "/Image" timestamps. `nested=True` writes rPPG-Toolbox's re-nested `root/<name>/<name>/` +
    `root/<name>/<name>.json` instead."""
    import cv2

    base = Path(root) / name if nested else Path(root)
    frame_dir = base / name
    frame_dir.mkdir(parents=True, exist_ok=True)
    ppg, frames = pulse_frames(hr_bpm, seconds, fps, size, **kwargs)  # type: ignore[arg-type]
    step_ns = round(1e9 / fps)
    image_ts = [start_ns + i * step_ns for i in range(len(ppg))]
    for ts, img in zip(image_ts, frames, strict=True):
        cv2.imwrite(str(frame_dir / f"Image{ts}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    t60 = np.arange(int(round(seconds * 60))) / 60.0
    wave = np.rint(128 + 100 * pulse_waveform(t60, hr_bpm)).astype(int)
    full = [{"Timestamp": start_ns + round(t * 1e9),
             "Value": {"waveform": int(v), "pulseRate": int(round(hr_bpm)), "o2saturation": 98, "signalStrength": 4}}
            for t, v in zip(t60, wave, strict=True)]
    doc = {"/FullPackage": full, "/Image": [{"Timestamp": ts} for ts in image_ts]}
    (base / f"{name}.json").write_text(json.dumps(doc))
    return SyntheticVideo(frame_dir, ppg, float(fps), float(hr_bpm))
