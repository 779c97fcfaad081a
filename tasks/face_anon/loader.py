"""Images of the face_anon task: one sample per original face image.

Layouts: a flat folder of images (CelebA-HQ `CelebA-HQ-img/`, FFHQ thumbnails, or any folder), found at
the root or under `images/`, optionally with `identities.csv` (`file,identity_id`, deepface's form) or
CelebA's `identity_CelebA.txt` (`000001.jpg 2880`); or an identity tree `<identity>/<image>`. Identities
only decide which original pairs are impostors when the re-ID threshold is computed at FAR 1 %; without
them every image is its own identity.

The sample id is the image's path relative to the root; `target` holds the original's absolute path,
its file name and its identity, so the scorer pairs protected and original images by name, never by
the order of a folder listing.
"""

from __future__ import annotations

from pathlib import Path

from harness.core import DataError, Sample
from harness.datafiles import read_csv_rows, read_text

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _identity_table(root: Path) -> dict[str, str]:
    ids: dict[str, str] = {}
    if (root / "identities.csv").is_file():  # bad encoding, missing columns, truncated rows: DataErrors
        for row in read_csv_rows(root / "identities.csv", required=("file", "identity_id")):
            ids[Path(row["file"]).name] = row["identity_id"]
    elif (root / "identity_CelebA.txt").is_file():
        for i, line in enumerate(read_text(root / "identity_CelebA.txt").splitlines()):
            parts = line.split()
            if len(parts) != 2:
                raise DataError(f"{root / 'identity_CelebA.txt'}: line {i + 1}: expected '<file> <identity>'")
            ids[parts[0]] = parts[1]
    return ids


def image_samples(root: Path) -> list[Sample]:
    """One sample per image (flat folder, `images/`, or identity tree)."""
    flat = root / "images" if (root / "images").is_dir() else root
    files = _images(flat)
    if files:
        ids = _identity_table(root)
        pairs = [(p, ids.get(p.name, p.stem)) for p in files]
    else:
        pairs = [(p, d.name) for d in sorted(x for x in root.iterdir() if x.is_dir()) for p in _images(d)]
    if not pairs:
        raise DataError(f"{root}: no images (a flat folder, images/, or <identity>/<image> folders)")
    names = [p.name for p, _ in pairs]
    if len(set(names)) != len(names) and files:
        raise DataError(f"{flat}: duplicate file names")
    return [
        Sample(p.relative_to(root).as_posix(), inputs={"images": {"image": str(p)}},
               target={"image": str(p), "name": p.name, "identity": str(ident)}, groups={"identity": str(ident)})
        for p, ident in pairs
    ]
