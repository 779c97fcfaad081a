"""Face-attribute classifiers by spec, for attribute preservation (FDeID's utility dimension).

`load_attribute_classifier("torchscript:/w/attrs.pt?names=Male,Smiling,age&size=224&norm=imagenet")`:
a TorchScript (or `.pt2`) network mapping [n, 3, size, size] face crops to [n, k] outputs, one per name.
A name called `age` (or ending in `_age`) is a regression output (years); every other output is a binary
logit (> 0 means present). Crops are the detected face box enlarged by 20 %, RGB in [0, 1], optionally
normalised with ImageNet statistics (`norm=imagenet`). The user brings the weights (FairFace, a CelebA
attribute net...); a missing file says which and where. `tiny-random:K` builds a seeded random net with K
binary outputs named attr0..attrK-1, for tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from harness.core import HarnessError
from vision_models.faces.detect import Face

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def is_regression(name: str) -> bool:
    return name.lower() == "age" or name.lower().endswith("_age")


@dataclass
class AttributeClassifier:
    module: Any
    names: list[str]
    size: int = 224
    norm: str = "none"

    def crops(self, images: Sequence[np.ndarray], faces: Sequence[Face]) -> np.ndarray:
        from PIL import Image

        out = []
        for img, face in zip(images, faces, strict=True):
            x1, y1, x2, y2 = face.box
            pw, ph = 0.2 * (x2 - x1) / 2, 0.2 * (y2 - y1) / 2
            box = (round(x1 - pw), round(y1 - ph), round(x2 + pw), round(y2 + ph))
            crop = Image.fromarray(np.asarray(img, np.uint8)).crop(box).resize((self.size, self.size), Image.BILINEAR)
            out.append(np.asarray(crop, np.float32) / 255.0)
        x = np.stack(out)
        if self.norm == "imagenet":
            x = (x - IMAGENET_MEAN) / IMAGENET_STD
        return x.transpose(0, 3, 1, 2)

    def predict(self, images: Sequence[np.ndarray], faces: Sequence[Face]) -> list[dict[str, float]]:
        """Per image {name: value}: a logit for binary attributes, years for age."""
        import torch

        with torch.no_grad():
            y = self.module(torch.from_numpy(np.ascontiguousarray(self.crops(images, faces))))
        y = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y, np.float64)
        if y.ndim != 2 or y.shape[1] != len(self.names):
            raise HarnessError(f"attribute classifier returned shape {y.shape}, expected [n, {len(self.names)}] "
                               f"for names {self.names}")
        return [{n: float(v) for n, v in zip(self.names, row, strict=True)} for row in y]


def _tiny(k: int, seed: int = 0) -> Any:
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, k)).eval()
    torch.random.set_rng_state(state)
    return net


def load_attribute_classifier(spec: str) -> AttributeClassifier:
    kind, _, rest = spec.partition(":")
    path, _, query = rest.partition("?")
    opts = dict(parse_qsl(query))
    if kind == "tiny-random":
        k = int(path or 2)
        return AttributeClassifier(_tiny(k), [f"attr{i}" for i in range(k)], size=64)
    if kind != "torchscript":
        raise HarnessError(f"unknown attribute classifier {spec!r}; use torchscript:PATH?names=... or tiny-random:K")
    names = [n for n in opts.get("names", "").split(",") if n]
    if not names:
        raise HarnessError(f"attribute classifier {spec!r}: give the outputs' names, ?names=Male,Smiling,age")
    if not Path(path).is_file():
        raise HarnessError(f"weights missing: put the attribute network (TorchScript or .pt2) at {path or 'PATH'} "
                           f"and pass --role attributes=torchscript:PATH?names=...")
    import torch

    module = torch.export.load(path).module() if path.endswith(".pt2") else torch.jit.load(path).eval()
    return AttributeClassifier(module, names, int(opts.get("size", 224)), opts.get("norm", "none"))
