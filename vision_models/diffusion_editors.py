"""Image editors on diffusers pipelines, with the differentiable pieces that immunizers attack.

Why one class: an immunization run edits clean and protected images with the same pipeline, prompt and
seed, and its gradient immunizers need that very pipeline's VAE encoder and UNet. `load_editor(spec)`
builds one `Editor` per spec per process (solvers and scorer share it) over `vision_models.diffusion`'s
cached pipelines, and one lock serialises every use of it (diffusers pipelines keep scheduler state).

Specs (`--role editor=SPEC`): `instruct-pix2pix:NAME_OR_PATH`, `sd-inpaint:NAME_OR_PATH`,
`sdedit:NAME_OR_PATH` (the user's weights by hub name, loaded offline from the cache, or a folder), and
`tiny-random[:SEED]` (= `instruct-pix2pix:tiny-random[:SEED]`, a seeded random pipeline for smoke runs).
Settings follow after `?`: `sdedit:/w/sd15?steps=30&strength=0.5&size=512` (keys: steps, guidance,
image_guidance, strength, size); they are part of the spec and so of the run's identity.

Geometry: an image is resized (antialiased bilinear, the same torch op in the edit and in the attacks)
so that its longer side is `size` and both sides are multiples of 8; the edit comes back at that size.
Masks (inpainting) are white where the editor may change the image.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from harness.core import HarnessError

KIND_NAMES = {"instruct-pix2pix": "instruct-pix2pix", "sd-inpaint": "inpaint", "sdedit": "sdedit"}
SETTINGS = ("steps", "guidance", "image_guidance", "strength", "size")
_EDITORS: dict[str, Editor] = {}


@dataclass(frozen=True)
class EditorSpec:
    kind: str  # a diffusers pipeline kind of vision_models.diffusion: instruct-pix2pix | inpaint | sdedit
    model: str  # hub name, folder or tiny-random[:SEED]
    steps: int
    guidance: float
    image_guidance: float
    strength: float
    size: int

    @property
    def tiny(self) -> bool:
        return self.model.split(":", 1)[0] == "tiny-random"


def parse_editor_spec(text: str) -> EditorSpec:
    """`KIND:MODEL[?key=value&...]` or `tiny-random[:SEED][?...]` -> EditorSpec (HarnessError when malformed)."""
    head, _, query = text.strip().partition("?")
    if head == "tiny-random" or head.startswith("tiny-random:"):
        kind, model = "instruct-pix2pix", head
    else:
        name, _, model = head.partition(":")
        if name not in KIND_NAMES or not model:
            raise HarnessError(f"editor {text!r}: expected instruct-pix2pix:NAME_OR_PATH, sd-inpaint:NAME_OR_PATH, "
                               "sdedit:NAME_OR_PATH or tiny-random[:SEED] (settings after '?', e.g. ?steps=20)")
        kind = KIND_NAMES[name]
    tiny = model.split(":", 1)[0] == "tiny-random"
    values: dict[str, Any] = {"steps": 2 if tiny else 50, "guidance": 7.5, "image_guidance": 1.5,
                              "strength": 0.6 if kind == "sdedit" else 1.0, "size": 64 if tiny else 512}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in SETTINGS:
            raise HarnessError(f"editor {text!r}: unknown setting {key!r}; known: {', '.join(SETTINGS)}")
        try:
            values[key] = int(value) if key in ("steps", "size") else float(value)
        except ValueError:
            raise HarnessError(f"editor {text!r}: {key}={value!r} is not a number") from None
    if values["steps"] < 1 or values["size"] < 16 or not 0 < values["strength"] <= 1:
        raise HarnessError(f"editor {text!r}: need steps >= 1, size >= 16 and 0 < strength <= 1")
    return EditorSpec(kind, model, **values)


def editor_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The editing resolution: the longer side `size`, aspect kept, both sides multiples of 8."""
    scale = size / max(height, width)
    return max(8, int(round(height * scale / 8)) * 8), max(8, int(round(width * scale / 8)) * 8)


def to_tensor(image: np.ndarray) -> Any:
    """HxWx3 uint8 -> [1, 3, H, W] float32 in [0, 1]."""
    import torch

    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return torch.from_numpy(np.array(arr[:, :, :3], dtype=np.float32)).permute(2, 0, 1)[None] / 255.0


def to_uint8(x: Any) -> np.ndarray:
    """[1, 3, H, W] in [0, 1] -> HxWx3 uint8 (rounded)."""
    return (x[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)


def resize01(x: Any, shape: tuple[int, int]) -> Any:
    """Antialiased bilinear resize of [n, c, H, W] (identity when the shape already matches)."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    return F.interpolate(x, size=shape, mode="bilinear", antialias=True, align_corners=False)


@dataclass
class Editor:
    """A pipeline plus its spec; `lock` guards every use (edits and gradient attacks)."""

    spec: EditorSpec
    pipe: Any
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def device(self) -> Any:
        return self.pipe.vae.device

    @property
    def dtype(self) -> Any:
        return self.pipe.vae.dtype

    def shape_for(self, image: np.ndarray) -> tuple[int, int]:
        return editor_shape(image.shape[0], image.shape[1], self.spec.size)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The uint8 image the pipeline is given: resized to the editing resolution."""
        return to_uint8(resize01(to_tensor(image), self.shape_for(image)))

    def edit(self, image: np.ndarray, prompt: str, seed: int, mask: np.ndarray | None = None) -> np.ndarray:
        """Edit `image` (HxWx3 uint8) with `prompt`; the same (image, prompt, seed) gives the same pixels."""
        import torch
        from PIL import Image

        s = self.spec
        h, w = self.shape_for(image)
        src = Image.fromarray(self.prepare(image))
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        kwargs: dict[str, Any] = {"prompt": prompt, "image": src, "num_inference_steps": s.steps,
                                  "guidance_scale": s.guidance, "generator": gen, "output_type": "np"}
        if s.kind == "instruct-pix2pix":
            kwargs["image_guidance_scale"] = s.image_guidance
        elif s.kind == "sdedit":
            kwargs["strength"] = s.strength
        else:
            if mask is None:
                raise HarnessError("the sd-inpaint editor needs a mask: give a mask column in prompts.csv")
            kwargs.update(mask_image=Image.fromarray(self.prepare_mask(mask, (h, w))), height=h, width=w,
                          strength=s.strength)
        with self.lock, torch.no_grad():
            out = self.pipe(**kwargs).images[0]
        return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)

    @staticmethod
    def prepare_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        from PIL import Image

        m = np.asarray(mask)
        if m.ndim == 3:
            m = m[:, :, :3].max(axis=2)
        binary = np.where(m >= 128, 255, 0).astype(np.uint8)
        return np.asarray(Image.fromarray(binary).resize((shape[1], shape[0]), Image.NEAREST))

    # ------------------------------------------------------------------ differentiable parts (attacks)
    def editor_input(self, x01: Any) -> Any:
        """[1, 3, H, W] in [0, 1] (any size) -> the VAE's input in [-1, 1] at the editing resolution."""
        shape = editor_shape(int(x01.shape[-2]), int(x01.shape[-1]), self.spec.size)
        return (resize01(x01, shape) * 2 - 1).to(self.device, self.dtype)

    def encode(self, x01: Any) -> Any:
        """The VAE posterior mean (unscaled) of an image in [0, 1]; differentiable."""
        return self.pipe.vae.encode(self.editor_input(x01)).latent_dist.mean

    @property
    def scaling_factor(self) -> float:
        return float(self.pipe.vae.config.scaling_factor)

    def text_embeddings(self, prompt: str) -> Any:
        import torch

        tok = self.pipe.tokenizer
        ids = tok([prompt], padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(self.device)
        with torch.no_grad():
            return self.pipe.text_encoder(ids)[0]

    def timesteps(self, n: int) -> list[int]:
        """`n` training timesteps spread over the middle of the schedule (10 %-90 %)."""
        total = int(self.pipe.scheduler.config.num_train_timesteps)
        if n == 1:
            return [total // 2]
        return [int(round(total * (0.1 + 0.8 * i / (n - 1)))) for i in range(n)]

    def unet_input(self, x01: Any, t: int, noise: Any, mask01: Any | None = None) -> Any:
        """The UNet's input for image `x01` noised to timestep `t` with `noise`, built the way the
        editor's pipeline builds it (instruct-pix2pix: + image latents; inpainting: + mask, masked latents)."""
        import torch

        img = self.editor_input(x01)
        mean = self.pipe.vae.encode(img).latent_dist.mean
        alpha = self.pipe.scheduler.alphas_cumprod[t].to(self.device, self.dtype)
        zt = alpha.sqrt() * mean * self.scaling_factor + (1 - alpha).sqrt() * noise
        if self.spec.kind == "instruct-pix2pix":
            return torch.cat([zt, mean], dim=1)
        if self.spec.kind == "inpaint":
            m = torch.zeros_like(img[:, :1]) if mask01 is None else resize01(mask01, img.shape[-2:]).round()
            masked = self.pipe.vae.encode(img * (1 - m)).latent_dist.mean * self.scaling_factor
            m_lat = resize01(m, zt.shape[-2:]).round()
            return torch.cat([zt, m_lat.to(zt.dtype), masked], dim=1)
        return zt

    def latent_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int, int]:
        h, w = editor_shape(int(image_shape[0]), int(image_shape[1]), self.spec.size)
        f = 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)
        return 1, int(self.pipe.vae.config.latent_channels), math.ceil(h / f), math.ceil(w / f)

    def unet_features(self, x01: Any, t: int, noise: Any, cond: Any, mask01: Any | None = None,
                      layers: str = "all") -> list[Any]:
        """Intermediate UNet feature maps (outputs of the chosen down/mid/up blocks); differentiable."""
        import torch

        unet = self.pipe.unet
        blocks = {"down": list(unet.down_blocks), "mid": [unet.mid_block], "up": list(unet.up_blocks)}
        chosen = [b for name in (("down", "mid", "up") if layers == "all" else (layers,)) for b in blocks[name]]
        feats: list[Any] = []

        def hook(module: Any, args: Any, output: Any) -> None:
            feats.append(output[0] if isinstance(output, tuple) else output)

        handles = [b.register_forward_hook(hook) for b in chosen if b is not None]
        try:
            ts = torch.tensor([t], device=self.device)
            unet(self.unet_input(x01, t, noise, mask01), ts, encoder_hidden_states=cond)
        finally:
            for handle in handles:
                handle.remove()
        return feats


def load_editor(text: str, device: str | None = None) -> Editor:
    """One Editor per spec (and device) per process; model weights frozen (attacks need input gradients only)."""
    from vision_models.diffusion import BUILD_LOCK, load_pipeline

    spec = parse_editor_spec(text)
    key = f"{text}|{device}"
    with BUILD_LOCK:  # the process-wide pipeline-construction lock (re-entrant; load_pipeline takes it too)
        if key not in _EDITORS:
            pipe = load_pipeline(spec.kind, spec.model, device)
            for name in ("vae", "unet", "text_encoder"):
                getattr(pipe, name).requires_grad_(False)
            _EDITORS[key] = Editor(spec, pipe)
        return _EDITORS[key]
