"""Where MUStARD is read from when no --data is given: the copy shipped inside this package.

MUStARD's annotation JSON and its official folds are MIT-licensed and small (460 KB), so they ship as
package data (`tasks/sarcasm/data/`, with the licence and the source commit) and the default job runs
on a machine with no network. `--data` or `HARNESS_DATA` still point at a local copy (with clips, or
MUStARD++).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

MUSTARD_REPO = "soujanyaporia/MUStARD"
MUSTARD_COMMIT = "b34b5134beeec42a36cdac79330637de9cc9894e"
BUNDLED_DIR = Path(__file__).resolve().parent / "data"
# sha256 of the shipped, unmodified upstream annotation file
ANNOTATIONS_SHA256 = "ec9533032c5f143f197cb5fa5d4b29ab9bf56a20b0dc05d5b31d052f5957d39c"


def default_data_dir(folder_name: str, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """`$HARNESS_DATA/<folder>` when HARNESS_DATA is set, else the shipped copy.
    Returns (path, is_bundled)."""
    if environ.get("HARNESS_DATA"):
        return Path(environ["HARNESS_DATA"]) / folder_name, False
    return BUNDLED_DIR, True
