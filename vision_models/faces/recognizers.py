"""Face recognisers behind one batched interface, chosen by a spec string (`--role recognizer=SPEC`).

Specs: `dlib` (default; dlib's 128-d ResNet from `face-recognition-models`, offline), `arcface:PATH.onnx`
(onnxruntime), `facenet:PATH` and `adaface:PATH` (TorchScript or `torch.export` .pt2 files of the user's
weights). `register_recognizer(kind, factory)` adds more. Every recogniser returns L2-normalised
embeddings, so a dot product is the cosine similarity FDeID's `eval_privacy_lfw.py` uses.

Why `faces` can be passed in: FDeID embeds a de-identified image with the landmarks detected on its
original (a protected face is often not detectable any more, and re-detection would measure the
detector, not the recogniser). A face the detector misses is reported per image
(`FaceEmbedding.vector is None` with a reason), never dropped.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import HarnessError
from vision_models.faces.detect import Face, as_rgb_uint8, detect_face, model_path

# ArcFace / AdaFace 112x112 alignment template (insightface `arcface_dst`): eye centres, nose tip, mouth corners.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


@dataclass(frozen=True)
class FaceEmbedding:
    """One image's result: the unit-norm embedding and the face used, or None and why not."""

    vector: np.ndarray | None
    face: Face | None
    reason: str | None = None


class FaceRecognizer(abc.ABC):
    """Base: detect (unless faces are given), align, embed a batch. Subclasses implement `_embed_aligned`."""

    name: str = ""
    points: int = 5  # landmarks the alignment needs (5 for dlib's chips, 68 for the 5-point templates)
    batch_size: int = 32
    # One forward at a time per recogniser class: dlib's net (and many torch modules) keep per-call state
    # and crash or mix results when two threads run them at once.
    _net_lock: threading.Lock = threading.Lock()

    def detect(self, image: np.ndarray) -> Face | None:
        return detect_face(image, points=self.points)

    def embed_faces(
        self, images: Sequence[np.ndarray], faces: Sequence[Face | None] | None = None
    ) -> list[FaceEmbedding]:
        """Embed each image's largest face (or the given face: e.g. the original's, for a protected image)."""
        imgs = [as_rgb_uint8(im) for im in images]
        found = list(faces) if faces is not None else [self.detect(im) for im in imgs]
        if len(found) != len(imgs):
            raise ValueError(f"{len(imgs)} images but {len(found)} faces")
        out: list[FaceEmbedding] = [FaceEmbedding(None, None, "no face detected")] * len(imgs)
        todo = [i for i, f in enumerate(found) if f is not None]
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            with self._net_lock:  # one forward at a time: dlib's and many torch nets are not thread-safe
                vecs = self._embed_aligned([imgs[i] for i in idx], [found[i] for i in idx])  # type: ignore[misc]
            for i, v in zip(idx, vecs, strict=True):
                norm = float(np.linalg.norm(v))
                if not np.isfinite(norm) or norm == 0:
                    out[i] = FaceEmbedding(None, found[i], "recogniser returned a zero or non-finite embedding")
                else:
                    out[i] = FaceEmbedding((v / norm).astype(np.float32), found[i])
        return out

    def embed(self, images: Sequence[np.ndarray], faces: Sequence[Face | None] | None = None) -> np.ndarray:
        """[n, d] unit-norm embeddings; the row of an image without a face is NaN."""
        results = self.embed_faces(images, faces)
        dim = next((r.vector.shape[0] for r in results if r.vector is not None), self.dim)
        out = np.full((len(results), dim), np.nan, dtype=np.float32)
        for i, r in enumerate(results):
            if r.vector is not None:
                out[i] = r.vector
        return out

    dim: int = 0

    @abc.abstractmethod
    def _embed_aligned(self, images: list[np.ndarray], faces: list[Face]) -> np.ndarray:
        """Embeddings (n, dim) of the faces found in the images."""


class DlibRecognizer(FaceRecognizer):
    """dlib's ResNet-34 (99.38 % on LFW per dlib): 150x150 chips aligned on 5 landmarks, 128-d."""

    name = "dlib"
    points = 5
    dim = 128

    def __init__(self, num_jitters: int = 0) -> None:
        import dlib

        self._dlib = dlib
        self.model = dlib.face_recognition_model_v1(str(model_path("recognizer")))
        self.num_jitters = num_jitters

    def chip(self, image: np.ndarray, face: Face) -> np.ndarray:
        dlib = self._dlib
        pts = [dlib.point(round(x), round(y)) for x, y in face.landmarks]
        det = dlib.full_object_detection(dlib.rectangle(*face.box), pts)
        return dlib.get_face_chip(image, det, size=150, padding=0.25)

    def _embed_aligned(self, images: list[np.ndarray], faces: list[Face]) -> np.ndarray:
        chips = [self.chip(im, f) for im, f in zip(images, faces, strict=True)]
        return np.asarray(self.model.compute_face_descriptor(chips, self.num_jitters), dtype=np.float64)


def five_points(face: Face) -> np.ndarray:
    """Eye centres, nose tip and mouth corners from 68 dlib landmarks (the ArcFace template's points)."""
    lm = face.landmarks
    if len(lm) != 68:
        raise HarnessError(f"5-point alignment needs 68 landmarks, got {len(lm)}")
    return np.array([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def align_112(image: np.ndarray, face: Face, size: int = 112) -> np.ndarray:
    """Similarity-warp the face onto the ArcFace template (insightface `norm_crop`)."""
    from skimage.transform import SimilarityTransform, warp

    src, dst = ARCFACE_TEMPLATE * size / 112.0, five_points(face)  # the transform maps output -> input coords
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(src, dst)
    else:  # pragma: no cover - older scikit-image
        tform = SimilarityTransform()
        tform.estimate(src, dst)
    out = warp(image, tform, output_shape=(size, size), order=1, preserve_range=True)
    return out.astype(np.uint8)


def crop_box(image: np.ndarray, face: Face, size: int = 160, margin: float = 0.2) -> np.ndarray:
    """Square crop of the box enlarged by `margin` and resized (facenet-pytorch's MTCNN-style input)."""
    from PIL import Image

    left, top, right, bottom = face.box
    cx, cy, half = (left + right) / 2, (top + bottom) / 2, max(right - left, bottom - top) * (1 + margin) / 2
    box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    return np.asarray(Image.fromarray(image).crop(box).resize((size, size), Image.BILINEAR))


def weights_missing(kind: str, path: str, what: str) -> HarnessError:
    return HarnessError(
        f"weights missing: put {what} at {path} or pass --role recognizer={kind}:/path/to/{Path(path).name or what}"
    )


class OnnxArcFace(FaceRecognizer):
    """ArcFace/CosFace exported to ONNX (insightface layout: 1x3x112x112 RGB, (x - 127.5) / 127.5)."""

    points = 68

    def __init__(self, path: str, name: str = "arcface") -> None:
        if not Path(path).is_file():
            raise weights_missing(name, path, "an ArcFace .onnx model (e.g. insightface w600k_r50.onnx)")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise HarnessError("onnxruntime missing: pip install onnxruntime") from exc
        self.name = name
        self.session = ort.InferenceSession(path, providers=ort.get_available_providers())
        self.input = self.session.get_inputs()[0].name

    def _embed_aligned(self, images: list[np.ndarray], faces: list[Face]) -> np.ndarray:
        x = np.stack([align_112(im, f) for im, f in zip(images, faces, strict=True)]).astype(np.float32)
        x = ((x - 127.5) / 127.5).transpose(0, 3, 1, 2)
        return np.asarray(self.session.run(None, {self.input: x})[0], dtype=np.float64)


class TorchRecognizer(FaceRecognizer):
    """A TorchScript / .pt2 network: `facenet` (160x160 box crop, (x - 127.5) / 128, RGB) or `adaface`
    (112x112 ArcFace alignment, BGR, (x / 255 - 0.5) / 0.5, first output when it returns a tuple)."""

    points = 68

    def __init__(self, path: str, kind: str, module: Any = None, device: str | None = None) -> None:
        import torch

        self.name = kind
        self.kind = kind
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if module is None:
            if not Path(path).is_file():
                what = "a TorchScript or torch.export (.pt2) file of the network"
                raise weights_missing(kind, path, what)
            module = torch.export.load(path).module() if path.endswith(".pt2") else torch.jit.load(path)
        self.module = module.to(self.device).eval() if hasattr(module, "to") else module

    def _embed_aligned(self, images: list[np.ndarray], faces: list[Face]) -> np.ndarray:
        import torch

        if self.kind == "facenet":
            x = np.stack([crop_box(im, f) for im, f in zip(images, faces, strict=True)]).astype(np.float32)
            x = (x - 127.5) / 128.0
        else:
            x = np.stack([align_112(im, f)[:, :, ::-1] for im, f in zip(images, faces, strict=True)])
            x = (x.astype(np.float32) / 255.0 - 0.5) / 0.5
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.device)
        with torch.no_grad():
            y = self.module(t)
        if isinstance(y, tuple | list):
            y = y[0]
        return y.detach().float().cpu().numpy().astype(np.float64)


RecognizerFactory = Callable[[str], FaceRecognizer]
_REGISTRY: dict[str, RecognizerFactory] = {
    "dlib": lambda arg: DlibRecognizer(),
    "arcface": lambda arg: OnnxArcFace(arg, "arcface"),
    "cosface": lambda arg: OnnxArcFace(arg, "cosface"),
    "facenet": lambda arg: TorchRecognizer(arg, "facenet"),
    "adaface": lambda arg: TorchRecognizer(arg, "adaface"),
}
NEEDS_PATH = {"arcface", "cosface", "facenet", "adaface"}


def register_recognizer(kind: str, factory: RecognizerFactory) -> None:
    """Add a recogniser kind: `factory(argument after the colon)` returns a FaceRecognizer."""
    _REGISTRY[kind] = factory


def recognizer_kinds() -> list[str]:
    return sorted(_REGISTRY)


def load_recognizer(spec: str) -> FaceRecognizer:
    """Build a recogniser from `KIND[:ARG]` (e.g. `dlib`, `arcface:/models/w600k_r50.onnx`)."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in _REGISTRY:
        raise HarnessError(f"unknown recognizer {spec!r}; known kinds: {', '.join(recognizer_kinds())}")
    if kind in NEEDS_PATH and not arg:
        raise weights_missing(kind, f"{kind}.onnx" if kind in ("arcface", "cosface") else f"{kind}.pt", "the weights")
    return _REGISTRY[kind](arg)


def cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Cosine similarity of two embeddings (NaN when either is missing)."""
    if a is None or b is None:
        return float("nan")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
