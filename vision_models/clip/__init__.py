"""One open_clip wrapper for every CLIP-based solver (emotion zero-shot, linear probes, AU heads).

Why one class: every solver needs the same three things — the user's weights by name or path, batched
L2-normalised image and text features, and the model's own logit scale — and the cache must know
exactly which weights ran. `ClipModel.load(model, pretrained)` accepts an open_clip architecture name
(`ViT-B-16`) and `pretrained` = an open_clip tag (`openai`, `laion2b_s34b_b88k`; downloaded by
open_clip into its cache, never at test time), a checkpoint path, or `none` for random weights.
`tiny-random-clip` is a 32x32-pixel, 2-layer architecture shipped here for tests and benchmarks.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TINY_MODEL", "ClipModel", "weights_identity"]

TINY_MODEL = "tiny-random-clip"
_REGISTERED = False
_SHARED: dict[tuple, ClipModel] = {}
_SHARED_LOCK = threading.Lock()


def _register_tiny() -> None:
    global _REGISTERED
    if not _REGISTERED:
        import open_clip

        open_clip.add_model_config(Path(__file__).with_name(f"{TINY_MODEL}.json"))
        _REGISTERED = True


def weights_identity(pretrained: str | None) -> str | None:
    """What names the weights in the cache key: a tag as is, a file by its content hash (a
    retrained checkpoint saved under the same path is other weights)."""
    if pretrained is None or pretrained.lower() in ("", "none"):
        return None
    path = Path(pretrained).expanduser()
    if path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return f"file:{path.name}:{digest.hexdigest()[:16]}"
    return pretrained


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class ClipModel:
    """A loaded open_clip model with its eval transform and tokenizer."""

    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    name: str
    pretrained: str | None

    @classmethod
    def load(cls, model: str = "ViT-B-16", pretrained: str | None = None, device: str = "auto",
             precision: str = "fp32") -> ClipModel:
        """Build `model` with `pretrained` weights (tag, checkpoint path, or None/"none": random)."""
        import open_clip
        import torch

        _register_tiny()
        weights = None if pretrained is None or pretrained.lower() in ("", "none") else pretrained
        dev = _device(device)
        if dev == "cpu":
            precision = "fp32"
        try:
            # Random weights (pretrained=none) are drawn from a fixed seed: the same options, the same model.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                net, _, preprocess = open_clip.create_model_and_transforms(
                    model, pretrained=weights, device=dev, precision=precision)
        except (RuntimeError, FileNotFoundError) as exc:
            raise ValueError(f"open_clip could not build {model!r} with pretrained={pretrained!r}: {exc}") from exc
        net.eval()
        tokenizer = open_clip.get_tokenizer(model)
        return cls(net, preprocess, tokenizer, dev, model, weights)

    @classmethod
    def shared(cls, model: str = "ViT-B-16", pretrained: str | None = None, device: str = "auto",
               precision: str = "fp32") -> ClipModel:
        """One loaded model per (architecture, weights, device, precision) in this process: solvers
        refitted per fold (LOSO) reuse it instead of loading the weights again."""
        key = (model, weights_identity(pretrained), _device(device), precision)
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = cls.load(model, pretrained, device, precision)
            return _SHARED[key]

    @property
    def logit_scale(self) -> float:
        """exp(learned temperature), the `scale` of CLIP's logits (100 for released models)."""
        return float(self.model.logit_scale.exp().item())

    def _run(self, fn: Any, batch: Any, normalize: bool = True) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = fn(batch.to(self.device)).float()
            if normalize:
                out = out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            return out.cpu().numpy()

    def encode_clips(self, clips: Sequence[Sequence[Any]], batch_size: int = 64) -> np.ndarray:
        """[N, D] features of video clips: the mean of the frames' raw image features, then L2-normalised
        (Exp-CLIP's Dynamic_FER pooling). All frames of all clips go through the model `batch_size` at a time."""
        lengths = [len(c) for c in clips]
        if any(n == 0 for n in lengths):
            raise ValueError("a clip has no frames")
        flat = self.encode_images([f for c in clips for f in c], batch_size=batch_size, normalize=False)
        bounds = np.cumsum([0, *lengths])
        pooled = np.stack([flat[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def encode_images(self, images: Sequence[Any], batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """[N, D] features of PIL images (or HxWx3 / HxW uint8 arrays), `batch_size` at a time; unit-norm
        unless `normalize=False`."""
        import torch
        from PIL import Image

        feats = []
        for i in range(0, len(images), batch_size):
            chunk = [im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im))
                     for im in images[i:i + batch_size]]
            batch = torch.stack([self.preprocess(im.convert("RGB")) for im in chunk])
            feats.append(self._run(self.model.encode_image, batch, normalize))
        dim = int(self.model.text_projection.shape[-1]) if not feats else feats[0].shape[1]
        return np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """[N, D] unit-norm text features."""
        feats = [self._run(self.model.encode_text, self.tokenizer(list(texts[i:i + batch_size])))
                 for i in range(0, len(texts), batch_size)]
        return np.concatenate(feats)
