"""Frames per second of the vision feature stages, batched vs one item at a time (issue 11).

GEI stage (gait_deid's recogniser): pretreated 64x64 silhouettes -> 64x44 cut -> GEI -> PCA/LDA embedding.
  one-at-a-time: each sequence is cut, averaged and embedded on its own (a PCA/LDA call per sequence);
  batched: all sequences of a chunk are cut and averaged, then embedded with one matrix call.
CLIP stage (emocap / micro_au): `ClipModel.encode_images` with batch_size 1 vs `--batch` (default 64).
Both stages run in this process on the same inputs, and the ratio batched / one-at-a-time is printed.

    python benchmarks/vision_solvers.py [--model tiny-random-clip|ViT-B-32] [--device cpu|cuda]
                                        [--images 256] [--sequences 200] [--frames 30]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _clock(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def gei_stage(n_seq: int, n_frames: int) -> dict[str, float]:
    from tasks.gait_deid.synthetic import silhouette
    from vision_models.gait import GeiRecognizer, cut_to_44, gei, pretreat_sequence

    rng = np.random.default_rng(0)
    base = {sid: pretreat_sequence([silhouette(sid, "nm-01", "090", t, n_frames) for t in range(n_frames)])
            for sid in range(1, 11)}
    seqs = [base[1 + i % 10] for i in range(n_seq)]
    train = np.stack([gei(cut_to_44(base[s])) + rng.normal(0, 0.01, 64 * 44) for s in base for _ in range(4)])
    rec = GeiRecognizer(pca_dim=30).fit(train, [str(s) for s in base for _ in range(4)])

    def one() -> None:
        for s in seqs:
            rec.embed(gei(cut_to_44(s)))

    def batched() -> None:
        rec.embed(np.stack([gei(cut_to_44(s)) for s in seqs]))

    frames = n_seq * n_frames
    t1, tb = _clock(one), _clock(batched)
    return {"one_fps": frames / t1, "batched_fps": frames / tb, "ratio": t1 / tb}


def clip_stage(model: str, device: str, n_images: int, batch: int) -> dict[str, float]:
    from vision_models.clip import ClipModel

    clip = ClipModel.load(model, None, device)
    images = list(np.random.default_rng(0).integers(0, 255, (n_images, 100, 100, 3), dtype=np.uint8))
    clip.encode_images(images[:batch], batch_size=batch)  # warm-up
    t1 = _clock(lambda: clip.encode_images(images, batch_size=1), repeats=1)
    tb = _clock(lambda: clip.encode_images(images, batch_size=batch), repeats=2)
    return {"one_fps": n_images / t1, "batched_fps": n_images / tb, "ratio": t1 / tb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-random-clip")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--sequences", type=int, default=200)
    ap.add_argument("--frames", type=int, default=30)
    args = ap.parse_args()
    g = gei_stage(args.sequences, args.frames)
    print(f"GEI  ({args.sequences} sequences x {args.frames} frames): one at a time {g['one_fps']:,.0f} frames/s, "
          f"batched {g['batched_fps']:,.0f} frames/s, ratio {g['ratio']:.2f}x")
    c = clip_stage(args.model, args.device, args.images, args.batch)
    print(f"CLIP ({args.model}, {args.device}, {args.images} images): batch 1 {c['one_fps']:,.1f} images/s, "
          f"batch {args.batch} {c['batched_fps']:,.1f} images/s, ratio {c['ratio']:.2f}x")


if __name__ == "__main__":
    main()
