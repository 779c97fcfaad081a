"""Per-pair scores and set-level metrics of a protection run.

Per pair: the cosine similarity of the two originals and of the two protected images under the
`recognizer` role, and SSIM/PSNR of each protected image against its original. The set-level numbers
(verification accuracy, PSR, AUC, EER, TAR@FAR) are `vision_models.privacy_eval` on all pairs pooled;
SSIM/PSNR are means over distinct images (an image in many pairs counts once).

Two ways to embed a protected image, both reported:
- `prot_sim` (the headline `psr`, `verification_accuracy`, ...): the recogniser detects the face on the
  protected image itself, as an attacker would; a protected image with no detectable face counts as
  protected (similarity -2, below every threshold), never dropped. This is the issue's rule.
- `prot_sim_lmk` (`*_orig_landmarks` metrics): FDeID `eval_privacy_lfw.py`'s way, the protected image
  embedded at the face found on its original. For a black mask every protected face is then the same
  black chip (similarity ~1 for every pair, PSR ~0), which is why it is not the headline.
An original without a detectable face is that pair's error (its identity cannot be verified).

Utility: landmark NME, dlib's 68 points predicted inside the original's face box on the original and
on the protected image, mean distance over the original's inter-ocular distance (300-W's outer eye
corners). FDeID scores landmarks with HRNet; dlib's predictor is the offline stand-in.
NIQE (`niqe` role: the pristine model file, `vision_models/niqe.py`) is no-reference: it scores each
protected image and, as the baseline, its original.
Embeddings and quality values are memoised per image in the run-wide `PairScorer`
(`ScoreContext.resource`), so an image shared by many pairs is embedded once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.core import DataError, HarnessError, Record
from vision_models.faces import quality
from vision_models.faces.detect import as_rgb_uint8, landmark_nme, landmarks_at, load_image
from vision_models.faces.memo import Once
from vision_models.faces.quality import feature_net
from vision_models.faces.recognizers import FaceEmbedding, FaceRecognizer, cosine, load_recognizer
from vision_models.niqe import NiqeModel, load_niqe_model, niqe
from vision_models.privacy_eval import NO_FACE_SIMILARITY, k_fold_accuracy, privacy_report


class PairScorer:
    """A recogniser plus per-image memos of original embeddings and protected-image results."""

    def __init__(self, recognizer: FaceRecognizer, quality: bool = True, lpips_net: Any = None,
                 fid_net: Any = None, niqe_model: NiqeModel | None = None) -> None:
        self.recognizer = recognizer
        self.quality = quality  # False for the extra recognisers of a run: SSIM etc. are computed once
        self.lpips_net, self.fid_net, self.niqe_model = lpips_net, fid_net, niqe_model
        self._orig = Once()
        self._prot = Once()

    @classmethod
    def from_spec(cls, spec: str, quality: bool = True, lpips: str = "none", fid: str = "none",
                  niqe: str = "none") -> PairScorer:
        def net(s: str) -> Any:
            return None if s in ("", "none") else feature_net(s)

        return cls(load_recognizer(spec), quality, net(lpips), net(fid), niqe_from_spec(niqe))

    def original(self, path: str, image: np.ndarray | None = None) -> FaceEmbedding:
        hit: FaceEmbedding = self._orig.get(
            path, lambda: self.recognizer.embed_faces([image if image is not None else load_image(path)])[0])
        if hit.vector is None:
            raise DataError(f"{path}: {hit.reason or 'no face'} in the original, so this pair cannot be verified")
        return hit

    def protected(self, path: str, ref: str, load_protected: Callable[[str], np.ndarray]) -> dict[str, Any]:
        """Embedding of the protected image at the original's face, and its SSIM/PSNR to the original."""
        return self._prot.get((path, ref), lambda: self._protected(path, ref, load_protected))

    def _protected(self, path: str, ref: str, load_protected: Callable[[str], np.ndarray]) -> dict[str, Any]:
        original = load_image(path)
        emb = self.original(path, original)
        prot = as_rgb_uint8(load_protected(ref))  # grey or RGBA artifacts as RGB
        if prot.shape != original.shape:
            raise HarnessError(f"protected image {ref} is {prot.shape}, its original {path} is {original.shape}")
        at_orig = self.recognizer.embed_faces([prot], faces=[emb.face])[0]
        detected = self.recognizer.embed_faces([prot])[0]
        out = {"vector": detected.vector, "reason": detected.reason, "vector_lmk": at_orig.vector}
        if self.quality:
            box = emb.face.box  # type: ignore[union-attr]
            out.update(ssim=quality.ssim(original, prot), psnr=quality.psnr(original, prot),
                       nme=landmark_nme(landmarks_at(original, box), landmarks_at(prot, box)))
            if self.lpips_net is not None:
                out["lpips"] = float(self.lpips_net.lpips([original], [prot])[0])
            if self.fid_net is not None:
                feats = self.fid_net.features([original, prot])
                out["fidf_orig"], out["fidf_prot"] = _round(feats[0]), _round(feats[1])
            out.update(niqe_scores(self.niqe_model, original, prot))
        return out

    def score_pair(self, target: Mapping[str, Any], prediction: Mapping[str, Any],
                   load_protected: Callable[[str], np.ndarray]) -> dict[str, Any]:
        if not isinstance(prediction, Mapping) or not all(isinstance(prediction.get(s), str) for s in "ab"):
            raise HarnessError(f"prediction must map 'a' and 'b' to protected-image artifacts, got {prediction!r}")
        a, b = str(target["a"]), str(target["b"])
        pa = self.protected(a, prediction["a"], load_protected)
        pb = self.protected(b, prediction["b"], load_protected)
        orig = cosine(self.original(a).vector, self.original(b).vector)
        def sim(key: str) -> float | None:
            return cosine(pa[key], pb[key]) if pa[key] is not None and pb[key] is not None else None

        prot = sim("vector")
        return {
            "same": int(target["same"]), "orig_sim": orig, "prot_sim": prot, "prot_sim_lmk": sim("vector_lmk"),
            **{f"{k}_{side}": p[k] for k in ("ssim", "psnr", "nme", "lpips", "fidf_orig", "fidf_prot", "niqe",
                                             "niqe_orig", "niqe_error")
               for side, p in (("a", pa), ("b", pb)) if k in p},
            "prot_face_a": int(pa["vector"] is not None), "prot_face_b": int(pb["vector"] is not None),
        }


def niqe_from_spec(spec: str) -> NiqeModel | None:
    """The `niqe` role: `none` (no NIQE, NaN in the metrics) or the pristine model file (.mat / .npz)."""
    return None if spec in ("", "none") else load_niqe_model(spec)


def niqe_scores(model: NiqeModel | None, original: np.ndarray, protected: np.ndarray) -> dict[str, Any]:
    """NIQE of the protected image and of its original (the baseline); an image too small for two 96x96
    patches gets a `niqe_error` reason instead of a number (counted in the report, never a fake value)."""
    if model is None:
        return {}
    try:
        return {"niqe": niqe(protected, model), "niqe_orig": niqe(original, model)}
    except ValueError as exc:
        return {"niqe_error": str(exc)}


NIQE_NOTE = ("no niqe: give --role niqe=PATH to NIQE's pristine model (the authors' modelparameters.mat, or an .npz "
             "with mu and cov, e.g. from `python -m vision_models.niqe fit OUT.npz IMAGES...`)")


def niqe_report(records: Sequence[Record]) -> dict[str, Any]:
    """Report entries for NIQE: images it could not score (too small), or a note when the role was not given."""
    ok = [r for r in records if r.ok]
    errors = {str(r.target[side]): r.scores[f"niqe_error_{side}"]
              for r in ok for side in ("a", "b", "image") if f"niqe_error_{side}" in r.scores}
    out: dict[str, Any] = {}
    if errors:
        out["niqe_images_not_scored"] = len(errors)
        out["niqe_errors"] = dict(sorted(errors.items())[:10])
    if ok and not errors and not any(k.startswith("niqe") for r in ok for k in r.scores):
        out["notes"] = [NIQE_NOTE]
    return out


# ------------------------------------------------------------------------------------------- metrics
def _scored(records: Sequence[Record]) -> list[Record]:
    return [r for r in records if "orig_sim" in r.scores]


def privacy_values(records: Sequence[Record]) -> dict[str, float]:
    rs = _scored(records)
    if not rs:
        return {}
    orig, same = [r.scores["orig_sim"] for r in rs], [r.scores["same"] for r in rs]
    values = privacy_report(orig, [r.scores["prot_sim"] for r in rs], same).flat()
    at_lmk = privacy_report(orig, [r.scores.get("prot_sim_lmk") for r in rs], same).flat()
    values.update({f"{k}_orig_landmarks": v for k, v in at_lmk.items() if not k.startswith("orig_")})
    return values


_MEMO: dict[tuple[int, ...], dict[str, float]] = {}
_MEMO_LOCK = threading.Lock()


def privacy_metric(key: str) -> Callable[[Sequence[Record]], float]:
    """One number of the privacy report (the report is computed once per record set)."""

    def fn(records: Sequence[Record]) -> float:
        memo_key = tuple(id(r) for r in records)
        with _MEMO_LOCK:
            values = _MEMO.get(memo_key)
        if values is None:
            values = privacy_values(records)
            with _MEMO_LOCK:
                if len(_MEMO) > 8:
                    _MEMO.clear()
                _MEMO[memo_key] = values
        return float(values.get(key, float("nan")))

    return fn


def _round(v: np.ndarray) -> list[float]:
    return [float(f"{x:.6g}") for x in np.asarray(v, dtype=np.float64)]


def fid_over_images(records: Sequence[Record]) -> float:
    """FID between the distinct originals and their protected images (features from the `fid` role)."""
    feats: dict[str, tuple[list[float], list[float]]] = {}
    for r in _scored(records):
        for side in ("a", "b"):
            if f"fidf_orig_{side}" in r.scores:
                feats[str(r.target[side])] = (r.scores[f"fidf_orig_{side}"], r.scores[f"fidf_prot_{side}"])
    if len(feats) < 2:
        return float("nan")
    orig, prot = zip(*feats.values(), strict=True)
    return quality.fid_from_features(np.array(orig), np.array(prot))


def per_image_mean(score: str) -> Callable[[Sequence[Record]], float]:
    """Mean of a per-image score over distinct images (an image in many pairs counts once)."""

    def fn(records: Sequence[Record]) -> float:
        values: dict[str, float] = {}
        for r in records:  # pairs have sides a and b; the utility protocol's single images, "image"
            for side in ("a", "b", "image"):
                if f"{score}_{side}" in r.scores:
                    values[str(r.target[side])] = float(r.scores[f"{score}_{side}"])
        return float(np.mean(list(values.values()))) if values else float("nan")

    return fn


def recognizer_table(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    """Privacy numbers of every further recogniser of the run (scores keyed `<name>@recognizerN`)."""
    names = sorted({k.split("@", 1)[1] for r in records for k in r.scores if k.startswith("orig_sim@")})
    table: dict[str, dict[str, Any]] = {}
    for name in names:
        rs = [r for r in records if f"orig_sim@{name}" in r.scores]
        same = [r.scores["same"] for r in rs]
        orig = [r.scores[f"orig_sim@{name}"] for r in rs]
        rep = privacy_report(orig, [r.scores[f"prot_sim@{name}"] for r in rs], same)
        lmk = privacy_report(orig, [r.scores[f"prot_sim_lmk@{name}"] for r in rs], same)
        table[name] = {"model": rs[0].scores.get(f"model@{name}"), "n_pairs": len(rs), "psr": rep.psr,
                       "orig_verification_accuracy": rep.original["accuracy"],
                       "verification_accuracy": rep.protected["accuracy"], "auc": rep.protected["auc"],
                       "eer": rep.protected["eer"], "tar_at_far_1": rep.protected["tar_at_far_1"],
                       "psr_orig_landmarks": lmk.psr}
    return table


def ten_fold_accuracy(key: str) -> Callable[[Sequence[Record]], float]:
    """LFW's 10-fold accuracy (threshold from the other nine folds) of `orig_sim` or `prot_sim`."""

    def fn(records: Sequence[Record]) -> float:
        rs = [r for r in _scored(records) if "fold" in r.groups]
        sims = [NO_FACE_SIMILARITY if r.scores[key] is None else r.scores[key] for r in rs]
        return k_fold_accuracy(sims, [r.scores["same"] for r in rs], [r.groups["fold"] for r in rs])

    return fn
