"""In-process transformers backend: requests per second with batching (max_batch=8) against one at a time
(max_batch=1), on the tiny random Llama of the tests, same requests, same process, CPU or GPU.

    python benchmarks/hf_batching.py [--requests 32] [--max-tokens 32] [--device cpu|cuda]

Prints both rates and their ratio. On a GPU the ratio grows with the model (a step of a batch costs about
what a step of one request costs); on a 2-core CPU with a tiny model it shows that batching at least does
not cost throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


async def rate(model: Path, max_batch: int, n: int, max_tokens: int, device: str) -> tuple[float, list[int]]:
    from harness.models import ChatRequest, Message
    from harness.models.hf_backend import HFBackend

    backend = HFBackend(str(model), device=device, dtype="float32", max_batch=max_batch)
    await backend.chat(ChatRequest((Message.text("user", "warm up"),), max_tokens=2))
    requests = [ChatRequest((Message.text("user", f"question number {i}: is it sarcastic?"),), max_tokens=max_tokens)
                for i in range(n)]
    start = time.perf_counter()
    await asyncio.gather(*(backend.chat(r) for r in requests))
    wall = time.perf_counter() - start
    sizes = list(backend._batcher.batch_sizes[1:])
    await backend.aclose()
    return n / wall, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from tiny_models import build_tiny_causal_lm

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_causal_lm(Path(tmp) / "tiny-lm")
        one, _ = asyncio.run(rate(model, 1, args.requests, args.max_tokens, args.device))
        batched, sizes = asyncio.run(rate(model, 8, args.requests, args.max_tokens, args.device))
    print(f"one at a time: {one:.1f} requests/s")
    print(f"batched (max 8): {batched:.1f} requests/s, batch sizes {sizes}")
    print(f"ratio batched / one at a time: {batched / one:.2f}")


if __name__ == "__main__":
    main()
