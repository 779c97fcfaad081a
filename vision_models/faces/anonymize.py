"""Localized, attribute-guided face inpainting (after Salar et al., arXiv 2509.14866).

Two pieces on top of `vision_models.diffusion`:
- `region_mask`: the face (convex hull of dlib's 68 landmarks, jaw and brows) minus the parts the user
  keeps (`eyes`, `brows`, `nose`, `mouth`: each part's hull, dilated by 15 % of the inter-ocular
  distance), so `-S keep=eyes,mouth` regenerates everything of the face but the eyes and the mouth.
- `inpaint_guided`: inpainting whose latents are corrected after every denoising step by the gradient of
  an attribute loss (1 - cosine similarity between a feature net's embedding of the decoded image and
  of a target image), the paper's "gradient correction during the reverse denoising process". The
  paper guides with FaRL features of a synthesized target face; here the feature net is pluggable
  (`quality.feature_net` specs: `tiny-random` for tests, TorchScript files for real nets) and the target
  defaults to the original face (attribute preservation). The step is `scale` times the gradient
  normalised to the latents' RMS, so `scale` is comparable across models.
Only masked pixels are pasted back; everything else is the original, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vision_models.diffusion import crop_around

PARTS = {
    "eyes": [list(range(36, 42)), list(range(42, 48))],
    "brows": [list(range(17, 22)), list(range(22, 27))],
    "nose": [list(range(27, 36))],
    "mouth": [list(range(48, 60))],
}


def region_mask(shape: Sequence[int], landmarks: np.ndarray, keep: Sequence[str] = ()) -> np.ndarray:
    """HxW bool: True where the face is regenerated (face hull minus the kept parts)."""
    import cv2

    lm = np.asarray(landmarks, dtype=np.float64)
    if len(lm) != 68:
        raise ValueError(f"region masks need 68 landmarks, got {len(lm)}")
    unknown = [k for k in keep if k not in PARTS]
    if unknown:
        raise ValueError(f"unknown face part(s) {unknown}; choose from {', '.join(PARTS)}")
    h, w = int(shape[0]), int(shape[1])
    face = np.zeros((h, w), np.uint8)
    outline = lm[list(range(0, 27))].copy()
    outline[17:27, 1] -= 0.25 * (lm[8, 1] - lm[27, 1])  # lift the brows to take in the forehead
    cv2.fillConvexPoly(face, cv2.convexHull(np.round(outline).astype(np.int32)), 1)
    kept = np.zeros((h, w), np.uint8)
    for part in keep:
        for idx in PARTS[part]:
            cv2.fillConvexPoly(kept, cv2.convexHull(np.round(lm[idx]).astype(np.int32)), 1)
    if keep:
        iod = float(np.linalg.norm(lm[36] - lm[45]))
        k = max(3, int(0.15 * iod) | 1)
        kept = cv2.dilate(kept, np.ones((k, k), np.uint8))
    return (face > 0) & (kept == 0)


def attribute_loss(net: Any, target: np.ndarray, size: int) -> Any:
    """A loss over decoded images [1, 3, H, W] in [-1, 1]: 1 - cos(features, target's features)."""
    import torch
    import torch.nn.functional as F

    def embed(x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(net.size, net.size), mode="bilinear", align_corners=False)
        return net.module(x)[-1].mean(dim=(2, 3))

    dev = next(iter(net.module.parameters())).device
    t = torch.from_numpy(np.asarray(target, np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0).to(dev)
    with torch.no_grad():
        ref = embed(t)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return 1.0 - F.cosine_similarity(embed(x.float().to(dev)), ref).mean()

    return loss


def inpaint_guided(pipe: Any, image: np.ndarray, mask: np.ndarray, prompt: str, *, loss: Any = None,
                   scale: float = 0.0, seed: int = 0, steps: int = 30, guidance: float = 7.5,
                   size: int = 512) -> np.ndarray:
    """Inpaint the True pixels of `mask` (HxW) in `image`, with optional attribute-gradient correction."""
    import torch
    from PIL import Image

    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.array(image, copy=True)
    left, top, right, bottom = crop_around((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                                         image.shape)
    crop = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
    cw, ch = crop.size
    m = (mask[top:bottom, left:right] * 255).astype(np.uint8)

    def correct(p: Any, step: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        lat = kwargs["latents"].detach()
        with torch.enable_grad():
            z = lat.clone().requires_grad_(True)
            decoded = p.vae.decode(z / p.vae.config.scaling_factor).sample
            (grad,) = torch.autograd.grad(loss(decoded), z)
        rms = lat.float().pow(2).mean().sqrt()
        step_vec = grad / (grad.float().pow(2).mean().sqrt() + 1e-12) * rms
        return {"latents": (lat - scale * step_vec).to(lat.dtype)}

    extra = {}
    if loss is not None and scale > 0:
        extra = {"callback_on_step_end": correct, "callback_on_step_end_tensor_inputs": ["latents"]}
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = pipe(prompt=prompt, image=crop.resize((size, size)), mask_image=Image.fromarray(m).resize((size, size)),
               num_inference_steps=steps, guidance_scale=guidance, height=size, width=size, generator=gen,
               output_type="np", **extra).images[0]
    new = np.asarray(Image.fromarray((np.clip(out, 0, 1) * 255).round().astype(np.uint8)).resize((cw, ch)))
    result = np.array(image, copy=True)
    region = result[top:bottom, left:right]
    region[m > 0] = new[m > 0]
    return result
