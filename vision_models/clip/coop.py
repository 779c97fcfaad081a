"""CoOp-style prompt learning (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022) on a
frozen open_clip model.

Why here: a learned context is the standard way to adapt CLIP to a new binary or few-class task with the
user's weights without touching either encoder, and it is generic (class names in, text features out).
The prompt of class c is `[SOS] ctx_1 .. ctx_M <class name tokens> . [EOS]`; the M context vectors are
shared by all classes (CoOp's unified context) and are the only trainable parameters. They start from the
token embeddings of `ctx_init` (e.g. "a photo of a": then, before any training, the learned text features
equal the model's `encode_text` of "a photo of a <name>.") or, with `ctx_init=""`, from N(0, 0.02^2).
Training: cross-entropy of `logit_scale * image_features . text_features^T` on precomputed (frozen,
unit-norm) image features, SGD with momentum and a cosine schedule, as CoOp. Calling `train` again
continues from the current context (fine-tuning; a fresh optimiser each call).
Only open_clip's built-in CLIP text tower with its BPE tokenizer is supported (the context is spliced into
the token-embedding sequence); another tower is refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["PromptLearner"]


class PromptLearner:
    """Learned context vectors for `classnames` on the text tower of a `ClipModel` (frozen)."""

    def __init__(self, clip: Any, classnames: Sequence[str], ctx_init: str = "a photo of a", n_ctx: int = 4,
                 seed: int = 0) -> None:
        import torch

        model = clip.model
        for attr in ("token_embedding", "positional_embedding", "transformer", "ln_final"):
            if not hasattr(model, attr):
                raise ValueError(f"prompt learning needs open_clip's CLIP text tower; {clip.name} has no {attr}")
        self.clip, self.classnames = clip, tuple(classnames)
        for p in model.parameters():  # the encoders are frozen: only the context is learned
            p.requires_grad_(False)
        tok = clip.tokenizer
        ctx_init = " ".join(ctx_init.split())
        if ctx_init:
            ids = tok([ctx_init])[0]
            n_ctx = int((ids > 0).sum()) - 2  # minus [SOS] and [EOS]
            if n_ctx < 1:
                raise ValueError(f"ctx_init {ctx_init!r} has no tokens")
        prefix = ctx_init or " ".join(["X"] * n_ctx)
        self.n_ctx, self.ctx_init = n_ctx, ctx_init
        self.tokens = tok([f"{prefix} {name}." for name in self.classnames]).to(clip.device)
        with torch.no_grad():
            emb = model.token_embedding(self.tokens).float()
        self.prefix = emb[:, :1]
        self.suffix = emb[:, 1 + n_ctx:]
        gen = torch.Generator().manual_seed(seed)
        init = emb[0, 1:1 + n_ctx].clone() if ctx_init else torch.randn(n_ctx, emb.shape[-1], generator=gen) * 0.02
        self.ctx = torch.nn.Parameter(init.to(clip.device))
        self.seed = seed
        self.steps = 0

    def _text(self) -> Any:
        """[C, D] unit-norm text features of the current context (differentiable in `ctx`)."""
        import torch

        model = self.clip.model
        cast = model.transformer.get_cast_dtype() if hasattr(model.transformer, "get_cast_dtype") else torch.float32
        c = len(self.classnames)
        x = torch.cat([self.prefix, self.ctx.unsqueeze(0).expand(c, -1, -1), self.suffix], dim=1).to(cast)
        x = x + model.positional_embedding.to(cast)
        if not getattr(model.transformer, "batch_first", True):
            x = x.permute(1, 0, 2)
            x = model.transformer(x, attn_mask=model.attn_mask).permute(1, 0, 2)
        else:
            x = model.transformer(x, attn_mask=model.attn_mask)
        x = model.ln_final(x)
        x = x[torch.arange(c, device=x.device), self.tokens.argmax(dim=-1)]  # the [EOS] position
        proj = model.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, torch.nn.Module) else x @ proj
        x = x.float()
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def text_features(self) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self._text().cpu().numpy()

    def loss(self, feats: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
        """Mean (weighted) cross-entropy of the current context on unit-norm image features."""
        import torch

        with torch.no_grad():
            return float(self._loss(*self._tensors(feats, labels, weights)))

    def _tensors(self, feats: np.ndarray, labels: np.ndarray, weights: np.ndarray | None) -> tuple[Any, Any, Any]:
        import torch

        dev = self.clip.device
        w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32, device=dev)
        return (torch.as_tensor(feats, dtype=torch.float32, device=dev),
                torch.as_tensor(labels, dtype=torch.long, device=dev), w)

    def _loss(self, x: Any, y: Any, w: Any) -> Any:
        import torch.nn.functional as F

        logits = self.clip.model.logit_scale.exp().detach().float() * x @ self._text().t()
        return F.cross_entropy(logits, y, weight=w)

    def train(self, feats: np.ndarray, labels: np.ndarray, epochs: int = 10, lr: float = 0.002,
              batch_size: int = 32, class_weights: np.ndarray | None = None) -> list[float]:
        """Fit the context on (features, class index) pairs; returns the mean loss of each epoch."""
        import torch

        if len(feats) != len(labels) or not len(feats):
            raise ValueError(f"{len(feats)} features for {len(labels)} labels")
        x, y, w = self._tensors(feats, labels, class_weights)
        opt = torch.optim.SGD([self.ctx], lr=lr, momentum=0.9)
        n_batches = -(-len(x) // batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * n_batches))
        gen = torch.Generator().manual_seed(self.seed + 1000 * self.steps)
        history = []
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen).to(x.device)
            total = 0.0
            for i in range(0, len(x), batch_size):
                idx = order[i:i + batch_size]
                loss = self._loss(x[idx], y[idx], w)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / len(x))
        self.steps += 1
        return history
