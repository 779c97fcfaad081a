"""An OpenGait recogniser (GaitBase, GaitSet, GaitPart, GaitGL...) from the user's config and checkpoint.

Why a wrapper and not OpenGait's own `main.py`: that entry point needs a `torch.distributed` launch,
builds the training/test data loaders from the config's dataset partition, and evaluates a whole
dataset at once; the harness wants embeddings of the sequences it scores, on one GPU (or the CPU), in
one process. So the model class is taken from the user's OpenGait checkout (`opengait/modeling/models`,
found from `OPENGAIT_ROOT` or from a parent folder of the config file), its network is built from the
config's `model_cfg` through the model's own `build_network` (the parts of `BaseModel.__init__` that
set up loaders, distributed ranks and devices are skipped), and the checkpoint's `model` state dict is
loaded (`evaluator_cfg.restore_ckpt_strict`, default strict).

Inference follows OpenGait's test path: the config's evaluator transform (`BaseSilCuttingTransform`,
the default: cut 10 columns per 64 of width on each side, 64x64 -> 64x44, divide by 255; or
`BaseSilTransform`: divide only), at most `evaluator_cfg.sampler.frames_all_limit` frames per sequence
(the first ones, as the "all_ordered" sampler keeps them), several sequences packed along time in one
[1, sum(len), 64, 44] tensor with `seqL = [[len_1, ..., len_b]]` (what OpenGait's `CollateFn` does for
the "all" sampler, so set pooling sees each sequence's real frames: no padding frames), and
`inference_feat["embeddings"]` ([b, c, p]) returned. Distances between them are OpenGait's part-averaged Euclidean
(`tasks.gait_deid.evaluation.part_distance` with `parts = p`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class WeightsMissing(FileNotFoundError):
    """The user's OpenGait config, checkpoint or checkout is not where the spec says."""


class _MsgMgr:
    """Stands in for OpenGait's message manager (which needs a distributed rank) in model code."""

    def log_info(self, *args: Any, **kw: Any) -> None:
        log.debug(" ".join(map(str, args)))

    log_debug = log_info

    def log_warning(self, *args: Any, **kw: Any) -> None:
        log.warning(" ".join(map(str, args)))


def parse_spec(spec: str) -> tuple[Path, Path]:
    """`opengait:CONFIG:CKPT` -> (config path, checkpoint path)."""
    body = spec[len("opengait:"):] if spec.startswith("opengait:") else spec
    config, sep, ckpt = body.partition(":")
    if not sep or not config or not ckpt:
        raise ValueError(f"recogniser spec {spec!r}: expected opengait:CONFIG.yaml:CHECKPOINT.pt")
    return Path(config).expanduser(), Path(ckpt).expanduser()


def find_opengait_root(config: Path) -> Path:
    """The folder holding `modeling/models` (the `opengait/` package folder of an OpenGait checkout)."""
    candidates = []
    if os.environ.get("OPENGAIT_ROOT"):
        env = Path(os.environ["OPENGAIT_ROOT"]).expanduser()
        candidates += [env / "opengait", env]
    for parent in config.resolve().parents:
        candidates += [parent / "opengait", parent]
    for cand in candidates:
        if (cand / "modeling" / "models").is_dir():
            return cand
    raise WeightsMissing(f"no OpenGait checkout found for {config}: set OPENGAIT_ROOT to the folder holding "
                         "opengait/modeling/models (git clone https://github.com/ShiqiYu/OpenGait)")


class OpenGaitRecognizer:
    """`embed(sequences)` -> [b, c * p] float32 embeddings (row-major [c, p]); `parts` = p."""

    def __init__(self, config: str | Path, checkpoint: str | Path, device: str | None = None) -> None:
        import torch
        import yaml

        self.config, self.checkpoint = Path(config).expanduser(), Path(checkpoint).expanduser()
        for what, path in (("config", self.config), ("checkpoint", self.checkpoint)):
            if not path.is_file():
                raise WeightsMissing(f"OpenGait {what} not found: {path} (the weights are the user's: train them "
                                     "with OpenGait or download its model-zoo checkpoint, then pass "
                                     "--role recognizer=opengait:CONFIG.yaml:CHECKPOINT.pt)")
        try:
            cfgs = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self.config}: not valid YAML ({exc})") from None
        if not isinstance(cfgs, dict) or not isinstance(cfgs.get("model_cfg"), dict) \
                or "model" not in cfgs["model_cfg"]:
            raise ValueError(f"{self.config}: not an OpenGait config (no model_cfg.model)")
        self.model_name = str(cfgs["model_cfg"]["model"])
        root = find_opengait_root(self.config)
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        import importlib

        try:
            models = importlib.import_module("modeling.models")
        except ImportError as exc:
            raise ImportError(f"the OpenGait checkout at {root} does not import ({exc}); install its requirements "
                              "(pip install -r OpenGait/requirements.txt)") from exc
        cls = getattr(models, self.model_name, None)
        if cls is None:
            raise ValueError(f"{root}/modeling/models has no model {self.model_name!r} (from {self.config})")
        self.device = torch.device(device or ("cuda:0" if torch.cuda.is_available() else "cpu"))
        model = cls.__new__(cls)
        torch.nn.Module.__init__(model)
        model.msg_mgr, model.cfgs, model.iteration = _MsgMgr(), cfgs, 0
        model.engine_cfg = cfgs.get("evaluator_cfg") or {}
        model.build_network(cfgs["model_cfg"])
        import collections

        # weights only (no code runs); OpenGait's checkpoints also hold scheduler state with a Counter
        with torch.serialization.safe_globals([collections.Counter, collections.OrderedDict]):
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        strict = bool(model.engine_cfg.get("restore_ckpt_strict", True))
        model.load_state_dict(state, strict=strict)
        self.model = model.to(self.device).eval()
        self.float16 = bool(model.engine_cfg.get("enable_float16", False)) and self.device.type == "cuda"
        self.transform = _silhouette_transform(model.engine_cfg.get("transform"), self.config)
        limit = (model.engine_cfg.get("sampler") or {}).get("frames_all_limit", -1)
        self.frames_limit = int(limit) if limit is not None and int(limit) > 0 else None
        self.parts: int | None = None

    def embed(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of pretreated [n_i, 64, 64] uint8 sequences, packed into one forward pass."""
        import torch

        if not sequences:
            return np.zeros((0, 0), np.float32)
        cut = [self.transform(np.asarray(s)[: self.frames_limit]) for s in sequences]
        if any(len(c) == 0 for c in cut):
            raise ValueError("an empty silhouette sequence cannot be embedded")
        packed = torch.from_numpy(np.concatenate(cut)[None]).to(self.device)
        seql = torch.tensor([[len(c) for c in cut]], dtype=torch.int32, device=self.device)
        labs = torch.zeros(len(cut), dtype=torch.long, device=self.device)
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.float16):
            out = self.model(([packed], labs, None, None, seql))
        emb = out["inference_feat"]["embeddings"].float()
        if emb.ndim == 2:
            emb = emb[:, :, None]
        if emb.shape[0] != len(cut):
            raise ValueError(f"{self.model_name} returned {emb.shape[0]} embeddings for {len(cut)} sequences")
        self.parts = int(emb.shape[2])
        return emb.reshape(len(cut), -1).cpu().numpy().astype(np.float32)


def _silhouette_transform(cfg: Any, config: Path) -> Any:
    """OpenGait's evaluator silhouette transform from its config entry (None: the cutting default)."""
    if isinstance(cfg, list):
        if len(cfg) != 1:
            raise ValueError(f"{config}: evaluator_cfg.transform has {len(cfg)} entries; one silhouette input expected")
        cfg = cfg[0]
    cfg = cfg or {"type": "BaseSilCuttingTransform"}
    kind, divsor = cfg.get("type"), float(cfg.get("divsor", 255.0))
    if kind == "BaseSilCuttingTransform":
        fixed = cfg.get("cutting")

        def cut(x: np.ndarray) -> np.ndarray:
            c = int(fixed) if fixed is not None else int(x.shape[-1] // 64) * 10
            return (x[..., c:-c] / divsor).astype(np.float32)

        return cut
    if kind == "BaseSilTransform":
        return lambda x: (x / divsor).astype(np.float32)
    raise ValueError(f"{config}: evaluator transform {kind!r} is not supported (BaseSilCuttingTransform, "
                     "BaseSilTransform)")
