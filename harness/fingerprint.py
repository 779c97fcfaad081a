"""Stable hashes: of configs (what was run) and of data (what it ran on)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Annotation files up to this size are hashed by content. Media (frames, videos, audio) and larger
# files by name and size: a dataset of 100k PNG frames must not be read at start-up. That is the
# *portable* fingerprint, equal on every faithful copy of the data (another machine, a download that
# set new modification times), so that a board can check a submission's data against its own. The
# *local* fingerprint adds each media file's mtime, which changes when a file is replaced in place with
# one of the same size: the result cache keys on it, so a replaced frame is never served stale results.
CONTENT_HASH_LIMIT = 8 * 1024 * 1024
MEDIA_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".avi", ".mp4", ".mkv", ".mov", ".webm",
    ".wav", ".mp3", ".flac", ".m4a", ".npy", ".npz", ".h5", ".hdf5", ".mat", ".pt", ".pth", ".safetensors",
})


@dataclass(frozen=True)
class DataFingerprints:
    portable: str  # names, sizes and annotation content: what the manifest, `compare` and a board use
    local: str  # the portable one plus media mtimes: what the result cache keys on


def config_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def fingerprint_files(paths: Iterable[Path], root: Path | None = None) -> DataFingerprints:
    """A dangling symlink or an unreadable file does not stop a run: it enters the hash by name (and by
    size/mtime when those can be read). A loader that needs the file raises its own error naming it."""
    portable, local = hashlib.sha256(), hashlib.sha256()

    def update(data: bytes, *, local_only: bool = False) -> None:
        if not local_only:
            portable.update(data)
        local.update(data)

    for path in sorted(paths):
        name = str(path.relative_to(root)) if root else path.name
        update(name.encode() + b"\0")
        try:
            st = path.stat()
        except OSError:  # dangling symlink, vanished file
            update(b"<missing>")
            continue
        if st.st_size <= CONTENT_HASH_LIMIT and path.suffix.lower() not in MEDIA_SUFFIXES:
            try:
                update(hashlib.sha256(path.read_bytes()).digest())
                continue
            except OSError:  # unreadable (permissions, a FIFO, a directory named like a file)
                update(b"<unreadable>")
        update(f"{st.st_size}".encode())
        update(f":{st.st_mtime_ns}".encode(), local_only=True)
    return DataFingerprints(portable.hexdigest()[:16], local.hexdigest()[:16])


# What the harness itself writes under --out: never part of the data, even when --out sits inside --data
# (otherwise every run changes the fingerprint: the cache never hits and `compare` says "different data").
HARNESS_STORE_FILES = ("cache.sqlite", "model_cache.sqlite", "leaderboard.sqlite")
HARNESS_STORE_DIRS = ("artifacts", "frames")


def _is_run_dir(path: Path) -> bool:
    """A `runs/<run_id>/` folder: a manifest.json naming its run id and config."""
    manifest = path / "manifest.json"
    try:
        if not manifest.is_file() or manifest.stat().st_size > 1 << 20:
            return False
        content = json.loads(manifest.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and "run_id" in content and "config" in content


def data_fingerprints(root: Path) -> DataFingerprints:
    """Fingerprint every regular file under `root` (or `root` itself when it is a file), leaving out
    hidden files and whatever the harness wrote there (run folders, caches, the board, artifacts)."""
    if root.is_file():
        return fingerprint_files([root], root.parent)
    files = []
    for dirpath, dirnames, names in os.walk(root):
        here = Path(dirpath)
        is_store = any(n.startswith(HARNESS_STORE_FILES) for n in names)
        dirnames[:] = sorted(d for d in dirnames if not _is_run_dir(here / d)
                             and not (is_store and d in HARNESS_STORE_DIRS))
        files += [here / f for f in names if not f.startswith(".") and not f.startswith(HARNESS_STORE_FILES)]
    return fingerprint_files(files, root)


def fingerprint_tree(root: Path) -> str:
    """The portable fingerprint of the data under `root` (see `data_fingerprints`)."""
    return data_fingerprints(root).portable
