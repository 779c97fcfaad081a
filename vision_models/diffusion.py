"""Diffusion pipelines by spec (inpainting, InstructPix2Pix, SDEdit) and face inpainting on top of them.

`load_pipeline(kind, spec)`: `spec` is a diffusers model name or folder (loaded offline when
HF_HUB_OFFLINE=1: a missing model is a "weights missing" error naming it), or `tiny-random[:SEED]`, a
seeded pipeline of the same class built from configs (32/64-channel UNet, 2-block VAE, 2-layer CLIP text
encoder, a BPE tokenizer trained in-process on a fixed corpus): it runs the real code path on a CPU in
well under a second per step and produces noise. Pipelines are cached per (kind, spec, device).

`inpaint_face` regenerates the face box only: a square crop around the box (enlarged 1.5x) is resized to
the pipeline's resolution, the box is the mask, and only the masked pixels are pasted back at the
original resolution, so the protected image keeps its size and everything outside the box.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import HarnessError

KINDS = ("inpaint", "instruct-pix2pix", "sdedit")
_PIPES: dict[tuple[str, str, str], Any] = {}
BUILD_LOCK = threading.RLock()
"""Serialises every pipeline construction in the process (and guards `_PIPES`): diffusers resolves its
pipeline classes by lazy imports that are not thread-safe, so two pipelines built at once from two threads
fail with "module 'diffusers' has no attribute ...". Re-entrant, so callers that build more around a
pipeline (`vision_models.diffusion_editors.load_editor`) hold it across their own construction too."""
_CORPUS = [
    "a photo of a person's face", "a portrait of a smiling woman", "a man with glasses and a beard",
    "make it snowy", "turn the sky into a sunset", "add a hat", "a painting in the style of van gogh",
] * 10


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer trained here (deterministic: fixed corpus and vocabulary size)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>")
    fast.model_max_length = 77
    return fast


def tiny_components(kind: str, seed: int = 0) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = tiny_tokenizer()
    in_channels = {"inpaint": 9, "instruct-pix2pix": 8, "sdedit": 4}[kind]
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4), norm_num_groups=8)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=32)
    text = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, pad_token_id=1, eos_token_id=2, hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, vocab_size=len(tok), projection_dim=32, max_position_embeddings=77))
    torch.random.set_rng_state(state)
    scheduler = DDIMScheduler(steps_offset=1, clip_sample=False)
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": text.eval(), "tokenizer": tok,
            "scheduler": scheduler}


def _pipeline_class(kind: str) -> Any:
    import diffusers

    names = {"inpaint": "StableDiffusionInpaintPipeline",
             "instruct-pix2pix": "StableDiffusionInstructPix2PixPipeline",
             "sdedit": "StableDiffusionImg2ImgPipeline"}
    if kind not in names:
        raise HarnessError(f"unknown pipeline kind {kind!r}; use one of {', '.join(KINDS)}")
    return getattr(diffusers, names[kind])


def load_pipeline(kind: str, spec: str, dev: str | None = None) -> Any:
    """A cached pipeline of `kind` from `spec` (`tiny-random[:SEED]`, a folder, or a hub name in the cache).

    Construction runs under `BUILD_LOCK` (one build at a time per process); a cached pipeline is returned
    without building anything."""
    dev = dev or device()
    key = (kind, spec, dev)
    with BUILD_LOCK:
        if key not in _PIPES:
            _PIPES[key] = _build_pipeline(kind, spec, dev)
        return _PIPES[key]


def _build_pipeline(kind: str, spec: str, dev: str) -> Any:
    cls = _pipeline_class(kind)
    name, _, arg = spec.partition(":")
    if name == "tiny-random":
        pipe = cls(**tiny_components(kind, int(arg or 0)), safety_checker=None, feature_extractor=None,
                   requires_safety_checker=False)
    else:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not Path(spec).exists()
        try:
            import torch

            dtype = torch.float16 if dev == "cuda" else torch.float32
            pipe = cls.from_pretrained(spec, dtype=dtype, local_files_only=offline, safety_checker=None)
        except (OSError, ValueError) as exc:
            raise HarnessError(
                f"weights missing: put the diffusers model folder at {spec} (or download {spec} into the Hugging "
                f"Face cache first) or pass tiny-random for a smoke run ({type(exc).__name__}: {exc})") from None
    pipe = pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe


Box = tuple[int, int, int, int]


def crop_around(box: Box, shape: tuple[int, ...], scale: float = 1.5) -> Box:
    """A square crop (left, top, right, bottom) around `box`, `scale` times its longer side, inside the image."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1) * scale / 2
    h, w = shape[:2]
    half = min(half, cx, cy, w - cx, h - cy, max(w, h))  # stay inside the image (square crop)
    half = max(half, max(x2 - x1, y2 - y1) / 2)
    left, top = max(0, round(cx - half)), max(0, round(cy - half))
    return left, top, min(w, round(cx + half)), min(h, round(cy + half))


def inpaint_face(pipe: Any, image: np.ndarray, box: tuple[int, int, int, int], prompt: str, *, seed: int = 0,
                 steps: int = 30, guidance: float = 7.5, size: int = 512) -> np.ndarray:
    """Regenerate the face box of `image` (HxWx3 uint8) with an inpainting pipeline; pixels outside stay."""
    import torch
    from PIL import Image

    left, top, right, bottom = crop_around(box, image.shape)
    crop = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
    cw, ch = crop.size
    mask = np.zeros((ch, cw), np.uint8)
    x1, y1, x2, y2 = box
    mask[max(0, y1 - top):max(0, y2 - top), max(0, x1 - left):max(0, x2 - left)] = 255
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = pipe(prompt=prompt, image=crop.resize((size, size)), mask_image=Image.fromarray(mask).resize((size, size)),
               num_inference_steps=steps, guidance_scale=guidance, height=size, width=size, generator=gen,
               output_type="np").images[0]
    new = np.asarray(Image.fromarray((np.clip(out, 0, 1) * 255).round().astype(np.uint8)).resize((cw, ch)))
    result = np.array(image, copy=True)
    region = result[top:bottom, left:right]
    region[mask > 0] = new[mask > 0]
    return result
