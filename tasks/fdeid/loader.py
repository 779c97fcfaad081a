"""Verification pairs of the three face layouts the fdeid task reads.

- `lfw`: LFW's View-2 `pairs.txt` (first line `10\t300`: 10 folds of 300 matched `name n1 n2` then 300
  mismatched `name1 n1 name2 n2` lines) beside an image tree `<Name>/<Name>_<%04d>.jpg` (found at the
  root, `images/`, `lfw/`, `lfw-deepfunneled/` or `lfw_funneled/`). A pair whose image is missing stays
  a sample: its solve fails with the missing file named, recorded as that pair's error.
- `folders`: an identity tree `<identity>/<image>` (or, when the root holds `identities.csv`
  (`file,identity_id`), the identities it lists): every genuine pair (two images of one identity) plus
  as many impostor pairs drawn with a fixed seed, or every pair when there are fewer than 5,000 in all.
- `pairs-csv`: a CSV of labelled pairs (deepface's `master.csv`: `file_x,file_y,Decision` with Yes/No,
  paths relative to the CSV's folder or its `images/`).
- `attributes` (utility): a CelebA-HQ/FFHQ-style flat folder with an attribute file (CelebA's text format
  or `attributes.csv`); one sample per image, scored for attribute preservation and quality.

A sample is one pair: `inputs["images"]` and `target` both hold the two absolute image paths (the scorer reads the
originals from the target, since `harness score` re-scores from samples.jsonl, which holds no inputs),
`target["same"]` is 1 for a genuine pair.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from harness.core import DataError, Sample
from harness.datafiles import read_csv_rows, read_text

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
LFW_IMAGE_ROOTS = (".", "images", "lfw", "lfw-deepfunneled", "lfw-deepfunneled/lfw-deepfunneled", "lfw_funneled")
ALL_PAIRS_BELOW = 5000
FOLDERS_SEED = 0  # fixed: every run of the folders protocol sees the same pairs
PAIRS_CSVS = ("master.csv", "pairs.csv")
IDENTITY_FILE = "identities.csv"  # folders protocol on a flat copy: file,identity_id (deepface's form)


def pair_sample(sample_id: str, a: Path, b: Path, same: int, groups: dict[str, str] | None = None) -> Sample:
    paths = {"a": str(a), "b": str(b)}
    return Sample(sample_id, inputs={"images": dict(paths)}, target={"same": int(same), **paths}, groups=groups or {})


# ------------------------------------------------------------------------------------------------ LFW
def parse_lfw_pairs(path: Path) -> list[tuple[int, str, int, str, int, int]]:
    """(fold, name1, n1, name2, n2, same) per line of an LFW pairs.txt, validated against its header."""
    lines = [ln.split() for ln in read_text(path).splitlines() if ln.strip()]
    if not lines or len(lines[0]) != 2 or not all(t.isdigit() for t in lines[0]):
        raise DataError(f"{path}: first line must be '<folds> <pairs per class>' (LFW View 2: '10 300')")
    folds, per = int(lines[0][0]), int(lines[0][1])
    body = lines[1:]
    if len(body) != folds * 2 * per:
        raise DataError(f"{path}: header promises {folds} x 2 x {per} = {folds * 2 * per} pairs, found {len(body)}")
    out = []
    for i, parts in enumerate(body):
        fold, pos = divmod(i, 2 * per)
        same = 1 if pos < per else 0
        try:
            if same and len(parts) == 3:
                out.append((fold + 1, parts[0], int(parts[1]), parts[0], int(parts[2]), 1))
            elif not same and len(parts) == 4:
                out.append((fold + 1, parts[0], int(parts[1]), parts[2], int(parts[3]), 0))
            else:
                raise ValueError
        except ValueError:
            kind = "matched 'name n1 n2'" if same else "mismatched 'name1 n1 name2 n2'"
            raise DataError(f"{path}: line {i + 2}: expected a {kind} line, got {' '.join(parts)!r}") from None
    return out


def lfw_image_root(root: Path) -> Path:
    """The folder holding `<Name>/` directories of LFW images (the one with the most person folders)."""
    best, count = root, -1
    for rel in LFW_IMAGE_ROOTS:
        cand = root / rel
        if cand.is_dir():
            n = sum(1 for p in cand.iterdir() if p.is_dir() and any(p.glob(f"{p.name}_*")))
            if n > count:
                best, count = cand, n
    if count <= 0:
        raise DataError(f"{root}: no LFW image folders (<Name>/<Name>_0001.jpg) under {', '.join(LFW_IMAGE_ROOTS)}")
    return best


def lfw_samples(root: Path) -> list[Sample]:
    pairs_file = root / "pairs.txt"
    images = lfw_image_root(root)
    samples = []
    for k, (fold, n1, i1, n2, i2, same) in enumerate(parse_lfw_pairs(pairs_file)):
        a = images / n1 / f"{n1}_{i1:04d}.jpg"
        b = images / n2 / f"{n2}_{i2:04d}.jpg"
        samples.append(pair_sample(f"{fold:02d}-{k:04d}", a, b, same, {"fold": str(fold)}))
    return samples


# -------------------------------------------------------------------------------------------- folders
def identity_tree(root: Path) -> dict[str, list[Path]]:
    """identity -> its images (sorted), for every sub-folder holding at least one image."""
    tree = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        imgs = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if imgs:
            tree[d.name] = imgs
    if not tree:
        raise DataError(f"{root}: no identity folders with images (expected ROOT/<identity>/<image>)")
    return tree


def folder_pairs(tree: dict[str, list[Path]], seed: int = FOLDERS_SEED,
                 all_below: int = ALL_PAIRS_BELOW) -> list[tuple[Path, Path, int]]:
    """Every genuine pair, plus an equal number of seeded impostor pairs (all pairs when few)."""
    images = [(ident, p) for ident, ps in tree.items() for p in ps]
    n = len(images)
    genuine = [(a, b, 1) for ps in tree.values() for a, b in itertools.combinations(ps, 2)]
    if n * (n - 1) // 2 < all_below:
        impostor = [(a, b, 0) for (ia, a), (ib, b) in itertools.combinations(images, 2) if ia != ib]
        return genuine + impostor
    rng = np.random.default_rng(seed)
    chosen: set[tuple[int, int]] = set()
    n_impostor_total = n * (n - 1) // 2 - len(genuine)
    want = min(len(genuine), n_impostor_total)
    while len(chosen) < want:
        i, j = (int(v) for v in rng.integers(0, n, 2))
        if i != j and images[i][0] != images[j][0]:
            chosen.add((min(i, j), max(i, j)))
    return genuine + [(images[i][1], images[j][1], 0) for i, j in sorted(chosen)]


def identity_file_tree(root: Path) -> dict[str, list[Path]] | None:
    """identity -> its images from `identities.csv` (`file,identity_id`, deepface's form; paths relative to
    the root or its `images/`), or None without that file. A listed image that is missing stays in the
    tree: its pairs fail at solve time naming the file."""
    path = root / IDENTITY_FILE
    if not path.is_file():
        return None
    tree: dict[str, list[Path]] = {}
    for row in read_csv_rows(path, required=("file", "identity_id")):
        tree.setdefault(row["identity_id"].strip(), []).append(_resolve(root, row["file"].strip()))
    if not tree:
        raise DataError(f"{path}: no rows")
    return {ident: sorted(set(ps)) for ident, ps in sorted(tree.items())}


def folder_samples(root: Path) -> list[Sample]:
    tree = identity_file_tree(root) or identity_tree(root)
    pairs = folder_pairs(tree)
    if not any(same for _, _, same in pairs):
        raise DataError(f"{root}: no identity has two images, so there is no genuine pair to protect")
    identity = {p: ident for ident, ps in tree.items() for p in ps}

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix() if p.is_relative_to(root) else p.as_posix()

    return [pair_sample(f"{rel(a)}|{rel(b)}", a, b, same, {"identity_a": identity[a]}) for a, b, same in pairs]


# ------------------------------------------------------------------------------------------ pairs-csv
def pairs_csv(root: Path) -> Path | None:
    return next((root / n for n in PAIRS_CSVS if (root / n).is_file()), None)


def _resolve(root: Path, name: str) -> Path:
    for base in (root, root / "images"):
        if (base / name).exists():
            return base / name
    return root / "images" / name if (root / "images").is_dir() else root / name


def csv_samples(root: Path) -> list[Sample]:
    path = pairs_csv(root)
    if path is None:
        raise DataError(f"{root}: no {' or '.join(PAIRS_CSVS)} with labelled pairs")
    rows = read_csv_rows(path)  # bad encoding or a truncated row: a DataError naming the file and row
    cols = {c.lower(): c for c in (rows[0].keys() if rows else [])}
    ka, kb = cols.get("file_x") or cols.get("a"), cols.get("file_y") or cols.get("b")
    kl = cols.get("decision") or cols.get("same") or cols.get("label")
    if not (ka and kb and kl):
        raise DataError(f"{path}: expected columns file_x,file_y,Decision (or a,b,same)")
    samples = []
    for i, row in enumerate(rows):
        label = str(row[kl]).strip().lower()
        if label not in ("yes", "no", "1", "0", "true", "false"):
            raise DataError(f"{path}: row {i + 2}: label {row[kl]!r} is not Yes/No/1/0")
        same = 1 if label in ("yes", "1", "true") else 0
        a, b = _resolve(root, row[ka].strip()), _resolve(root, row[kb].strip())
        samples.append(pair_sample(f"{i:05d}", a, b, same))
    return samples


# ----------------------------------------------------------------------------------------- attributes
ATTRIBUTE_FILES = ("CelebAMask-HQ-attribute-anno.txt", "list_attr_celeba.txt", "attributes.csv")
ATTRIBUTE_IMAGE_DIRS = ("CelebA-HQ-img", "img_align_celeba", "images", ".")


def attribute_file(root: Path) -> Path | None:
    return next((root / n for n in ATTRIBUTE_FILES if (root / n).is_file()), None)


def read_attributes(path: Path) -> dict[str, dict[str, float]]:
    """file name -> {attribute: value}: CelebA's text format (count, names, `file v1 v2 ...` with +-1,
    stored as 1/0) or a CSV with a `file` column and numeric attribute columns (e.g. age)."""
    out: dict[str, dict[str, float]] = {}
    if path.suffix == ".csv":
        for i, row in enumerate(read_csv_rows(path, required=("file",))):
            try:
                out[row["file"]] = {k: float(v) for k, v in row.items() if k != "file" and v != ""}
            except ValueError:
                raise DataError(f"{path}: row {i + 2}: attribute values must be numbers") from None
        return out
    lines = read_text(path).splitlines()
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and a line of attribute names")
    names = lines[1].split()
    for i, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1") for v in parts[1:]):
            raise DataError(f"{path}: line {i}: expected a file name and {len(names)} values of 1/-1")
        out[parts[0]] = {n: 1.0 if v == "1" else 0.0 for n, v in zip(names, parts[1:], strict=True)}
    return out


def attribute_samples(root: Path) -> list[Sample]:
    """One sample per labelled image (utility protocol: attribute preservation and quality)."""
    path = attribute_file(root)
    if path is None:
        raise DataError(f"{root}: no attribute file ({', '.join(ATTRIBUTE_FILES)})")
    labels = read_attributes(path)
    folder = next((root / d for d in ATTRIBUTE_IMAGE_DIRS if (root / d).is_dir()
                   and any((root / d / n).is_file() for n in list(labels)[:50])), root)
    return [Sample(f"{folder.name}/{name}", inputs={"images": {"image": str(folder / name)}},
                   target={"image": str(folder / name), "attributes": attrs})
            for name, attrs in sorted(labels.items())]


def detect_layout(root: Path) -> str | None:
    if (root / "pairs.txt").is_file():
        return "lfw"
    if attribute_file(root) is not None:
        return "attributes"
    if pairs_csv(root) is not None:
        return "pairs-csv"
    if root.is_dir() and any(p.is_dir() for p in root.iterdir()):
        return "folders"
    return None


LOADERS = {"lfw": lfw_samples, "folders": folder_samples, "pairs-csv": csv_samples, "attributes": attribute_samples}
