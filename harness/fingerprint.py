"""Stable hashes: of configs (what was run) and of data (what it ran on)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Annotation files up to this size are hashed by content. Media (frames, videos, audio) and larger
# files by name, size and mtime, which change whenever a file is replaced: a dataset of 100k PNG
# frames must not be read at start-up.
CONTENT_HASH_LIMIT = 8 * 1024 * 1024
MEDIA_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".avi", ".mp4", ".mkv", ".mov", ".webm",
    ".wav", ".mp3", ".flac", ".m4a", ".npy", ".npz", ".h5", ".hdf5", ".mat", ".pt", ".pth", ".safetensors",
})


def config_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def fingerprint_files(paths: Iterable[Path], root: Path | None = None) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        st = path.stat()
        name = str(path.relative_to(root)) if root else path.name
        h.update(name.encode() + b"\0")
        if st.st_size <= CONTENT_HASH_LIMIT and path.suffix.lower() not in MEDIA_SUFFIXES:
            h.update(hashlib.sha256(path.read_bytes()).digest())
        else:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def fingerprint_tree(root: Path) -> str:
    """Fingerprint every regular file under `root` (or `root` itself when it is a file)."""
    if root.is_file():
        return fingerprint_files([root], root.parent)
    files = [
        Path(dirpath) / f
        for dirpath, _, names in os.walk(root)
        for f in names
        if not f.startswith(".")
    ]
    return fingerprint_files(files, root)
