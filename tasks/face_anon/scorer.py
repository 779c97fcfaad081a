"""Per-image scores and set-level metrics of face_anon, after `parham1998/Face-Anonymization`.

- Re-ID rate (`re_id.py`): share of images whose protected version has a cosine similarity to its
  original strictly above the recogniser's FAR 1 % threshold: FaceNet's published 0.409131 for
  `facenet:*` recognisers, otherwise computed on the originals' impostor pairs (pairs of different
  identities; the 99th percentile of their similarities, so at most 1 % of impostors pass). The reference
  crops each image at its own detection and falls back to the whole image; we embed the protected image
  at its own detected face, and a protected image without a detectable face is not re-identified (as in
  fdeid: a face no detector finds is not recognised; embedding a black box at the original's landmarks
  gives a chip whose similarity says nothing about identity). `prot_face_detected` counts them.
- SSIM (`SSIM.py`): both images resized to 512x512, values in [0, 1], Gaussian 11x11 sigma 1.5 over the
  zero-padded image, averaged over the whole map and channels.
- PSNR: RGB at the original's resolution (the reference's `PSNR.py` uses grey 256x256 images and a
  running mean that is never reset, so its per-image numbers are not reproducible; documented here).
- FID (`FID.py`, torchmetrics): against the originals, with the feature net of the `fid` role
  (`inception:PATH` for real numbers, `tiny-random` for tests, `none`: not computed).
Pairs are matched by the sample (the original's file name), never by folder order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.core import DataError, HarnessError, Record
from vision_models.faces import quality
from vision_models.faces.detect import as_rgb_uint8, load_image
from vision_models.faces.memo import Once
from vision_models.faces.recognizers import FaceRecognizer, cosine, load_recognizer

PRESET_THRESHOLDS = {"facenet": 0.409131}  # FaceNet at FAR 1 % (the reference's re_id.py)
SSIM_SIZE = 512
MAX_IMPOSTOR_IMAGES = 4000  # threshold from at most this many originals (8M pairs)


def _round(v: np.ndarray) -> list[float]:
    return [float(f"{x:.6g}") for x in np.asarray(v, dtype=np.float64)]


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))


class ImageScorer:
    def __init__(self, recognizer: FaceRecognizer, spec: str, fid_net: Any = None) -> None:
        self.recognizer, self.spec, self.fid_net = recognizer, spec, fid_net
        self._orig = Once()

    @classmethod
    def build(cls, spec: str, fid_spec: str) -> ImageScorer:
        fid = None if fid_spec in ("", "none") else quality.feature_net(fid_spec)
        return cls(load_recognizer(spec), spec, fid)

    def preset_threshold(self) -> float | None:
        return PRESET_THRESHOLDS.get(self.spec.partition(":")[0].lower())

    def score(self, target: Mapping[str, Any], prediction: Mapping[str, Any],
              load_protected: Callable[[str], np.ndarray]) -> dict[str, Any]:
        if not isinstance(prediction, Mapping) or not isinstance(prediction.get("image"), str):
            raise HarnessError(f"prediction must map 'image' to a protected-image artifact, got {prediction!r}")
        path = str(target["image"])
        original = load_image(path)
        emb = self._orig.get(path, lambda: self.recognizer.embed_faces([original])[0])
        if emb.vector is None:
            raise DataError(f"{path}: {emb.reason} in the original, so re-identification cannot be measured")
        prot = as_rgb_uint8(load_protected(prediction["image"]))  # grey or RGBA artifacts as RGB
        if prot.shape != original.shape:
            prot = _resize(prot, (original.shape[1], original.shape[0]))
        own = self.recognizer.embed_faces([prot])[0]
        sq = (SSIM_SIZE, SSIM_SIZE)
        out: dict[str, Any] = {
            "sim": cosine(emb.vector, own.vector) if own.vector is not None else None,
            "prot_face_detected": int(own.vector is not None),
            "orig_embedding": _round(emb.vector),
            "preset_threshold": self.preset_threshold(),
            "ssim": quality.ssim(_resize(original, sq) / 255.0, _resize(prot, sq) / 255.0, data_range=1.0,
                                 padding="zero"),
            "psnr": quality.psnr(original, prot),
        }
        if self.fid_net is not None:
            feats = self.fid_net.features([_resize(original, sq), _resize(prot, sq)])
            out["fid_orig"], out["fid_prot"] = _round(feats[0]), _round(feats[1])
        return out


# ------------------------------------------------------------------------------------------- metrics
def _ok(records: Sequence[Record]) -> list[Record]:
    return [r for r in records if "orig_embedding" in r.scores]


def far_threshold(embeddings: np.ndarray, identities: Sequence[str], far: float = 0.01, seed: int = 0) -> float:
    """The similarity above which at most `far` of impostor pairs (different identities) fall."""
    e = np.asarray(embeddings, dtype=np.float64)
    ids = np.asarray(identities)
    if len(e) > MAX_IMPOSTOR_IMAGES:
        keep = np.sort(np.random.default_rng(seed).choice(len(e), MAX_IMPOSTOR_IMAGES, replace=False))
        e, ids = e[keep], ids[keep]
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    sims = e @ e.T
    iu = np.triu_indices(len(e), k=1)
    impostor = sims[iu][ids[iu[0]] != ids[iu[1]]]
    if len(impostor) == 0:
        return float("nan")
    return float(np.quantile(impostor, 1.0 - far, method="higher"))


def reid_threshold(records: Sequence[Record]) -> float:
    rs = _ok(records)
    if not rs:
        return float("nan")
    preset = rs[0].scores.get("preset_threshold")
    if preset is not None:
        return float(preset)
    return far_threshold(np.array([r.scores["orig_embedding"] for r in rs]), [r.groups.get("identity", r.sample_id)
                                                                           for r in rs])


def reid_rate(records: Sequence[Record]) -> float:
    rs = _ok(records)
    t = reid_threshold(rs)
    if not rs or not np.isfinite(t):
        return float("nan")
    return float(np.mean([r.scores["sim"] is not None and r.scores["sim"] > t for r in rs]))


def fid(records: Sequence[Record]) -> float:
    rs = [r for r in _ok(records) if "fid_orig" in r.scores]
    if len(rs) < 2:
        return float("nan")
    return quality.fid_from_features(np.array([r.scores["fid_orig"] for r in rs]),
                                     np.array([r.scores["fid_prot"] for r in rs]))
