"""Where MUStARD lives when no --data is given, and the one-time download of its two text files."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from harness.core import DataError

MUSTARD_REPO = "soujanyaporia/MUStARD"
MUSTARD_COMMIT = "b34b5134beeec42a36cdac79330637de9cc9894e"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/data/{name}"
# sha256 of the pinned sarcasm_data.json; the pickle is checked structurally when it is loaded.
EXPECTED_SHA256 = {"sarcasm_data.json": "ec9533032c5f143f197cb5fa5d4b29ab9bf56a20b0dc05d5b31d052f5957d39c"}
DOWNLOADED_FILES = ("sarcasm_data.json", "split_indices.p")


def default_data_dir(folder_name: str, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """`$HARNESS_DATA/<folder>` when HARNESS_DATA is set (never downloaded into), else the user cache
    folder `$XDG_CACHE_HOME` (or ~/.cache) `/harness/<folder>`. Returns (path, may_download)."""
    if environ.get("HARNESS_DATA"):
        return Path(environ["HARNESS_DATA"]) / folder_name, False
    cache_root = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return cache_root / "harness" / folder_name, True


def download_file(url: str, destination: Path, expected_sha256: str | None = None, timeout_s: float = 60.0) -> None:
    """Fetch `url` to a temporary file next to `destination`, check its hash, then rename it into place."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            out.write(response.read())
        if expected_sha256 is not None:
            digest = hashlib.sha256(Path(temp_name).read_bytes()).hexdigest()
            if digest != expected_sha256:
                raise DataError(f"{url}: downloaded file has sha256 {digest}, expected {expected_sha256}")
        os.replace(temp_name, destination)
    except OSError as exc:
        raise DataError(f"cannot download {url} to {destination}: {exc}") from exc
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def fetch_mustard(destination_dir: Path) -> None:
    """Download the pinned annotation JSON and fold pickle that are not already in `destination_dir`."""
    for name in DOWNLOADED_FILES:
        target = destination_dir / name
        if not target.exists():
            url = RAW_URL.format(repo=MUSTARD_REPO, commit=MUSTARD_COMMIT, name=name)
            download_file(url, target, EXPECTED_SHA256.get(name))
