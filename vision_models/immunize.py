"""Image immunizers: perturbations within an L-inf budget that make diffusion edits fail.

Why here (generic) and not in a task: the attacks need only an `Editor` (vision_models.diffusion_editors)
and an image; the immunization task wraps them as solvers. All work on HxWx3 uint8 images and return
uint8 images whose difference to the original is at most `budget_levels(eps)` grey levels per pixel
(`project_uint8`: the rounding to uint8 never spends more than the budget).

- `pgd_encoder`: PhotoGuard's encoder attack (Salman et al. 2023): signed-gradient PGD on the editor's VAE
  encoder, pulling the posterior mean toward a target latent (a mid-grey image's, `target="gray"`) or
  pushing it away from the clean latent (`target="away"`).
- `sifm`: the SIFM idea (arXiv 2512.14320, ../shared/TASKS.md): push the intermediate UNet features of the
  noised protected image away from those of the clean image's trajectory (same timesteps, same noise,
  same conditioning) and shrink their norm. Loss (minimised) per hooked block l, relative to the clean
  feature energy E_l = mean(F_l(clean)^2): -mean((F_l(x) - F_l(clean))^2) / E_l + norm_weight * mean(F_l(x)^2) / E_l.
  One timestep of the K spread over the schedule per iteration (cycled); prompt-agnostic by default (the
  immunizer does not know the edit): the conditioning is the empty prompt.
- baselines: `uniform_noise` (U[-eps, eps] or +-eps signs), `jpeg`, `gaussian_blur`, each projected onto
  the budget unless told otherwise.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from vision_models.diffusion_editors import Editor, to_tensor, to_uint8


def budget_levels(eps: float) -> int:
    """The largest whole number of grey levels (of 255) within eps (8/255 -> 8)."""
    return int(np.floor(eps * 255.0 + 1e-6))


def project_uint8(clean: np.ndarray, candidate: np.ndarray, eps: float) -> np.ndarray:
    """`candidate` clipped to clean +- budget_levels(eps) and to [0, 255] (uint8)."""
    levels = budget_levels(eps)
    c = clean.astype(np.int16)
    out = np.clip(np.rint(candidate.astype(np.float64)).astype(np.int16), c - levels, c + levels)
    return np.clip(out, 0, 255).astype(np.uint8)


def linf(clean: np.ndarray, protected: np.ndarray) -> float:
    """max |protected - clean| as a fraction of the pixel range (0..1)."""
    return float(np.abs(protected.astype(np.int16) - clean.astype(np.int16)).max()) / 255.0


# -------------------------------------------------------------------------------------------- baselines
def uniform_noise(image: np.ndarray, eps: float, rng: np.random.Generator, dist: str = "uniform") -> np.ndarray:
    levels = budget_levels(eps)
    if dist == "sign":
        noise = rng.choice(np.array([-levels, levels]), size=image.shape)
    else:
        noise = rng.integers(-levels, levels + 1, size=image.shape)
    return project_uint8(image, image.astype(np.int16) + noise, eps)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"))


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    out = gaussian_filter(image.astype(np.float64), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- PGD core
def _pgd(image: np.ndarray, eps: float, steps: int, step_size: float, loss_fn: Callable[[Any, int], Any],
         rng: np.random.Generator | None = None) -> tuple[np.ndarray, list[float]]:
    """Signed-gradient descent on `loss_fn(x, step)` within the L-inf ball of radius eps around `image`
    (in [0, 1]); `rng` given: uniform random start (needed when the loss is flat at the clean image, as a
    squared distance to it is). Returns the projected uint8 image and the losses."""
    import torch

    x0 = to_tensor(image)
    delta = torch.zeros_like(x0)
    if rng is not None:
        delta = torch.from_numpy(rng.uniform(-eps, eps, size=tuple(x0.shape))).float()
    losses: list[float] = []
    for step in range(steps):
        delta.requires_grad_(True)
        loss = loss_fn((x0 + delta).clamp(0, 1), step)
        (grad,) = torch.autograd.grad(loss.float(), delta)
        losses.append(float(loss.detach()))
        with torch.no_grad():
            delta = (delta - step_size * grad.sign()).clamp(-eps, eps)
            delta = (x0 + delta).clamp(0, 1) - x0
    return project_uint8(image, to_uint8(x0 + delta), eps), losses


def pgd_encoder(editor: Editor, image: np.ndarray, eps: float, steps: int, step_size: float,
                target: str = "gray", rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """PhotoGuard's encoder attack on the editor's VAE."""
    import torch

    with editor.lock:
        with torch.no_grad():
            clean = editor.encode(to_tensor(image))
            goal = editor.encode(torch.full_like(to_tensor(image), 0.5)) if target == "gray" else clean

        def loss_fn(x: Any, step: int) -> Any:
            z = editor.encode(x)
            mse = ((z - goal) ** 2).float().mean()
            return mse if target == "gray" else -mse

        protected, losses = _pgd(image, eps, steps, step_size, loss_fn, rng)
        with torch.no_grad():
            moved = float(((editor.encode(to_tensor(protected)) - clean) ** 2).float().mean())
    return protected, {"loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                       "latent_mse_to_clean": moved}


def sifm(editor: Editor, image: np.ndarray, eps: float, steps: int, step_size: float, *, timesteps: int = 3,
         norm_weight: float = 1.0, layers: str = "all", prompt: str = "", mask: np.ndarray | None = None,
         seed: int = 0, rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Push intermediate UNet features away from the clean trajectory and shrink their norm."""
    import torch

    mask01 = None
    if mask is not None:
        m = np.asarray(mask)
        m = m[:, :, :3].max(axis=2) if m.ndim == 3 else m
        mask01 = torch.from_numpy((m >= 128).astype(np.float32))[None, None]
    with editor.lock:
        dev, dtype = editor.device, editor.dtype
        cond = editor.text_embeddings(prompt)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        ts = editor.timesteps(timesteps)
        noises = [torch.randn(editor.latent_shape(image.shape), generator=gen).to(dev, dtype) for _ in ts]
        mask_dev = None if mask01 is None else mask01.to(dev, dtype)
        with torch.no_grad():
            clean = [editor.unet_features(to_tensor(image), t, n, cond, mask_dev, layers)
                     for t, n in zip(ts, noises, strict=True)]
        energy = [[float((f.float() ** 2).mean()) + 1e-12 for f in fs] for fs in clean]

        def loss_fn(x: Any, step: int) -> Any:
            k = step % len(ts)
            feats = editor.unet_features(x, ts[k], noises[k], cond, mask_dev, layers)
            total = 0.0
            for f, c, e in zip(feats, clean[k], energy[k], strict=True):
                f = f.float()
                total = total - ((f - c.float()) ** 2).mean() / e + norm_weight * (f**2).mean() / e
            return total

        protected, losses = _pgd(image, eps, steps, step_size, loss_fn, rng)
        with torch.no_grad():
            after = [editor.unet_features(to_tensor(protected), t, n, cond, mask_dev, layers)
                     for t, n in zip(ts, noises, strict=True)]
        per_block = [(a.float(), c.float(), e) for fa, fc, es in zip(after, clean, energy, strict=True)
                     for a, c, e in zip(fa, fc, es, strict=True)]
        shift = float(np.mean([((a - c) ** 2).mean().item() / e for a, c, e in per_block]))
        ratio = float(np.mean([(a**2).mean().item() / e for a, _, e in per_block]))
    return protected, {"loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                       "feature_shift": shift, "feature_energy_ratio": ratio, "timesteps": ts}
