"""Tiny random models saved locally (no downloads), and `transformers serve` on them.

`build_tiny_causal_lm(path)` saves a 2-layer Llama with a byte-level BPE tokenizer trained in-process
and a chat template; `build_tiny_vlm(path)` a tiny LLaVA (CLIP vision tower + Llama) with its processor;
`build_scripted_lm(path, replies, default)` a tiny Llama whose weights answer known replies by rule.
`serve(path)` starts `transformers serve PATH` on a free port and yields its `/v1` base URL once
`/v1/models` answers. Used by the end-to-end tests of the model backends, solvers and agents.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

SPECIAL = ["<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<image>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'text' %}{{ c['text'] }}{% elif c['type'] in ('image', 'image_url') %}<image>{% endif %}"
    "{% endfor %}{% endif %}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Is this utterance sarcastic? Answer yes or no.",
    '{"label": "sarcastic", "behavior": "on-task", "emotion": "neutral"}',
    "Students discuss the problem, one explains and another listens.",
] * 20


def build_tokenizer(vocab_size: int = 320):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<|end|>",
        bos_token="<|system|>",
        extra_special_tokens={"image_token": "<image>"},
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _llama_config(tokenizer, **over):  # -> LlamaConfig
    from transformers import LlamaConfig

    cfg = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    cfg.update(over)
    return LlamaConfig(**cfg)


def _save_lm(model, tokenizer, path: Path) -> Path:  # -> the folder `transformers serve` loads
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        max_new_tokens=8, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_causal_lm(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    model = LlamaForCausalLM(_llama_config(tokenizer))
    return _save_lm(model, tokenizer, path)


def build_tiny_vlm(path: Path, seed: int = 0) -> Path:
    """A tiny LLaVA: 32x32 images, 4 patches of 16 px, one `<image>` token expanded to 4 features."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=16, projection_dim=32,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision,
        text_config=_llama_config(tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.max_new_tokens = 8
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        patch_size=16,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_scripted_lm(path: Path, replies: dict[str, str], default: str) -> Path:
    """A tiny Llama that answers by rule, for end-to-end tests through the real `transformers serve`.

    The chat template ends the prompt with a marker token chosen by the first key of `replies` found in
    the last message's text (else a default marker). The weights make the model a bigram chain: the
    attention and MLP outputs are zeroed, so the next token depends on the current token alone, and
    marker -> one added token spelling the reply -> <|end|>. Greedy decoding therefore answers exactly
    `replies[key]` (or `default`): the server, its request handling and its token counts are real, the
    answers are known in advance."""
    import torch
    from tokenizers import AddedToken
    from transformers import LlamaForCausalLM

    tokenizer = build_tokenizer()
    keys = list(replies)
    markers = [f"<|rule{i}|>" for i in range(len(keys))] + ["<|rule-default|>"]
    texts = [replies[k] for k in keys] + [default]
    tokenizer.add_tokens([AddedToken(m, special=True, normalized=False) for m in markers], special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in dict.fromkeys(texts)])
    rules = "".join(f"{{%- {'elif' if i else 'if'} {json.dumps(k)} in ns.text -%}}{markers[i]}"
                    for i, k in enumerate(keys))
    tokenizer.chat_template = (
        "{%- set ns = namespace(text='') -%}"
        "{%- for m in messages -%}<|{{ m['role'] }}|>"
        "{%- if m['content'] is string -%}{{ m['content'] }}{%- set ns.text = m['content'] -%}"
        "{%- else -%}{%- set ns.text = '' -%}{%- for c in m['content'] -%}{%- if c['type'] == 'text' -%}"
        "{{ c['text'] }}{%- set ns.text = ns.text ~ c['text'] -%}{%- endif -%}{%- endfor -%}{%- endif -%}<|end|>"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}" + rules + "{%- else -%}" + markers[-1] + "{%- endif -%}{%- endif -%}"
    )
    config = _llama_config(tokenizer)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    ids = tokenizer.convert_tokens_to_ids
    chain = [(ids(m), ids(t)) for m, t in zip(markers, texts, strict=True)]
    answers = sorted({a for _, a in chain})
    sources = [m for m, _ in chain] + answers  # each gets its own one-hot embedding direction
    if len(sources) > config.hidden_size:
        raise ValueError(f"at most {config.hidden_size - 1} distinct replies")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed.zero_()
        head.zero_()
        model.model.norm.weight.fill_(1.0)
        for k, token in enumerate(sources):
            embed[token, k] = 1.0
        for k, (_, answer) in enumerate(chain):
            head[answer, k] = 50.0
        for answer in answers:
            head[tokenizer.eos_token_id, sources.index(answer)] = 50.0
    return _save_lm(model, tokenizer, path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_serve() -> None:
    """Skip when `transformers serve` cannot run here; in CI (CI=true) that is a failure instead."""
    import pytest

    reason = serve_available()
    if reason:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(reason)


def serve_available() -> str | None:
    """None when `transformers serve` can run here, else the reason it cannot."""
    cli = shutil.which("transformers", path=os.path.dirname(sys.executable)) or shutil.which("transformers")
    if cli is None:
        return "the `transformers` CLI is not installed"
    for module in ("fastapi", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            return f"`transformers serve` needs {module} (pip install 'transformers[serving]')"
    probe = subprocess.run([cli, "serve", "--help"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"`transformers serve` is unavailable in this transformers version: {probe.stderr[-300:]}"
    return None


@contextlib.contextmanager
def serve(model_path: Path, *, timeout_s: float = 90.0) -> Iterator[str]:
    """Run `transformers serve MODEL_PATH` on 127.0.0.1; yield its base URL (`.../v1`)."""
    cli = shutil.which("transformers", path=os.path.dirname(sys.executable)) or "transformers"
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = tempfile.TemporaryFile(mode="w+")
    cmd = [cli, "serve", str(model_path), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"`transformers serve` exited with {proc.returncode}:\n{log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as resp:
                    json.loads(resp.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(
                        f"`transformers serve` not ready after {timeout_s} s:\n{log.read()[-2000:]}"
                    ) from None
                time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
