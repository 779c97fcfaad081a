"""Images/s of the face-recogniser stage of fdeid scoring: batched vs one image at a time.

Both paths embed the same images with the same recogniser (`--recognizer`, default dlib) at faces
detected once beforehand, so only the embedding stage is timed: `embed(images, faces)` in batches of
`--batch` against a loop of `embed([image], [face])`. The ratio is measured in the same run; the
embeddings of both paths are compared (max abs difference) so a fast wrong path cannot pass.
On the CPU dlib's net gains little from batching (it runs one chip at a time inside); a torch or
ONNX recogniser on a GPU is where batches pay.

    python benchmarks/face_privacy.py [--data ../shared/data/deepface_verification_pairs/images]
        [--recognizer dlib] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from vision_models.faces.detect import load_image
    from vision_models.faces.recognizers import load_recognizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/deepface_verification_pairs/images")
    ap.add_argument("--recognizer", default="dlib")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--copies", type=int, default=2, help="repeat the image list this many times")
    args = ap.parse_args()

    rec = load_recognizer(args.recognizer)
    rec.batch_size = args.batch
    paths = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    images, faces = [], []
    for p in paths:
        img = load_image(p)
        face = rec.detect(img)
        if face is not None:
            images.append(img)
            faces.append(face)
    images, faces = images * args.copies, faces * args.copies
    print(f"{len(images)} face images from {args.data} ({args.recognizer}, batch {args.batch})")

    def batched() -> np.ndarray:
        return rec.embed(images, faces)

    def single() -> np.ndarray:
        return np.concatenate([rec.embed([im], [f]) for im, f in zip(images, faces, strict=True)])

    results = {}
    for name, fn in (("one-at-a-time", single), ("batched", batched)):
        fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        results[name] = (statistics.median(times), out)
        print(f"{name:14s} {len(images) / results[name][0]:8.1f} images/s  (median of {args.repeats})")
    diff = float(np.nanmax(np.abs(results["batched"][1] - results["one-at-a-time"][1])))
    ratio = results["one-at-a-time"][0] / results["batched"][0]
    print(f"batched / one-at-a-time throughput ratio: {ratio:.2f}x  (max |embedding difference| {diff:.2e})")


if __name__ == "__main__":
    main()
