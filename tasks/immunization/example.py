"""A small synthetic immunization folder (images + prompts.csv [+ masks]) for tests, smoke runs and the README.

`python -m tasks.immunization.example DIR [--n 4] [--size 64] [--masks]` writes it. The images are seeded
colour gradients with a few discs (structure for the editors and the quality metrics; no real people).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

PROMPTS = ["add a hat", "make it snowy", "turn the sky into a sunset", "a painting in the style of van gogh"]


def synthetic_image(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    base = rng.uniform(40, 215, size=3)
    slope = rng.uniform(-60, 60, size=(2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    for _ in range(3):
        cy, cx, r = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.08, 0.2)]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img[disc] = rng.uniform(0, 255, size=3)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def write_example_folder(folder: Path, n: int = 4, size: int = 64, seed: int = 0, masks: bool = False,
                         prompts_per_image: int = 1) -> Path:
    """`n` images, each with `prompts_per_image` prompts (and a centre-square mask when `masks`)."""
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        name = f"images/img{i:03d}.png"
        Image.fromarray(synthetic_image(size, rng)).save(folder / name)
        mask_name = ""
        if masks:
            (folder / "masks").mkdir(exist_ok=True)
            mask = np.zeros((size, size), np.uint8)
            mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
            mask_name = f"masks/img{i:03d}.png"
            Image.fromarray(mask).save(folder / mask_name)
        for k in range(prompts_per_image):
            rows.append({"image": name, "prompt": PROMPTS[(i + k) % len(PROMPTS)], "mask": mask_name})
    with (folder / "prompts.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "prompt", "mask"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--masks", action="store_true")
    args = parser.parse_args(argv)
    write_example_folder(args.folder, args.n, args.size, args.seed, args.masks)
    print(f"wrote {args.n} images and prompts.csv to {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
