"""fdeid's utility protocol: does a protected face keep its attributes (and how much quality is lost)?

On a labelled image folder (`loader.attribute_samples`), each protected image is compared with its
original: SSIM, PSNR, landmark NME (LPIPS with the `lpips` role, NIQE with `niqe`), and, with the `attributes` role
(`vision_models.faces.attributes`), the classifier's outputs on the original and on the protected image
at the original's face box. Metrics: `attr_accuracy` (binary attributes predicted on protected images
against the labels), `attr_accuracy_orig` (the classifier's own accuracy on the originals: the ceiling),
`attr_preservation` (protected predictions that agree with the original's), `age_mae` (years, when
the labels and the classifier have an `age`). Without the role the attribute metrics are NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.core import DataError, HarnessError, Record
from tasks.fdeid.scorer import niqe_from_spec, niqe_scores
from vision_models.faces import quality
from vision_models.faces.attributes import AttributeClassifier, is_regression, load_attribute_classifier
from vision_models.faces.detect import as_rgb_uint8, detect_face, landmark_nme, landmarks_at, load_image
from vision_models.faces.memo import Once
from vision_models.niqe import NiqeModel


class ImageUtility:
    def __init__(self, classifier: AttributeClassifier | None = None, lpips_net: Any = None,
                 niqe_model: NiqeModel | None = None) -> None:
        self.classifier, self.lpips_net, self.niqe_model = classifier, lpips_net, niqe_model
        self._faces = Once()

    @classmethod
    def build(cls, attributes: str = "none", lpips: str = "none", niqe: str = "none") -> ImageUtility:
        clf = None if attributes in ("", "none") else load_attribute_classifier(attributes)
        return cls(clf, None if lpips in ("", "none") else quality.feature_net(lpips), niqe_from_spec(niqe))

    def score(self, target: Mapping[str, Any], prediction: Mapping[str, Any],
              load_protected: Callable[[str], np.ndarray]) -> dict[str, Any]:
        if not isinstance(prediction, Mapping) or not isinstance(prediction.get("image"), str):
            raise HarnessError(f"prediction must map 'image' to a protected-image artifact, got {prediction!r}")
        path = str(target["image"])
        original = load_image(path)
        face = self._faces.get(path, lambda: detect_face(original))
        if face is None:
            raise DataError(f"{path}: no face detected in the original, so attribute preservation cannot be scored")
        prot = as_rgb_uint8(load_protected(prediction["image"]))  # grey or RGBA artifacts as RGB
        if prot.shape != original.shape:
            raise HarnessError(f"protected image {prediction['image']} is {prot.shape}, its original {original.shape}")
        out: dict[str, Any] = {
            "ssim_image": quality.ssim(original, prot), "psnr_image": quality.psnr(original, prot),
            "nme_image": landmark_nme(landmarks_at(original, face.box), landmarks_at(prot, face.box)),
        }
        if self.lpips_net is not None:
            out["lpips_image"] = float(self.lpips_net.lpips([original], [prot])[0])
        out.update({f"{k}_image": v for k, v in niqe_scores(self.niqe_model, original, prot).items()})
        if self.classifier is not None:
            orig_pred, prot_pred = self.classifier.predict([original, prot], [face, face])
            out["attr_orig"], out["attr_prot"] = orig_pred, prot_pred
        return out


def _pairs(records: Sequence[Record], key: str) -> list[tuple[float, float]]:
    """(prediction, label) of every binary attribute of every image with predictions under `key`."""
    out = []
    for r in records:
        preds, labels = r.scores.get(key), (r.target or {}).get("attributes") or {}
        for name, value in (preds or {}).items():
            if name in labels and not is_regression(name):
                out.append((value, labels[name]))
    return out


def attr_accuracy(key: str = "attr_prot") -> Callable[[Sequence[Record]], float]:
    def fn(records: Sequence[Record]) -> float:
        pairs = _pairs(records, key)
        return float(np.mean([(p > 0) == (y > 0.5) for p, y in pairs])) if pairs else float("nan")

    return fn


def attr_preservation(records: Sequence[Record]) -> float:
    agree = [(r.scores["attr_prot"][n] > 0) == (r.scores["attr_orig"][n] > 0)
             for r in records if "attr_prot" in r.scores for n in r.scores["attr_prot"] if not is_regression(n)]
    return float(np.mean(agree)) if agree else float("nan")


def age_mae(records: Sequence[Record]) -> float:
    errs = []
    for r in records:
        preds, labels = r.scores.get("attr_prot") or {}, (r.target or {}).get("attributes") or {}
        errs += [abs(v - labels[n]) for n, v in preds.items() if is_regression(n) and n in labels]
    return float(np.mean(errs)) if errs else float("nan")
