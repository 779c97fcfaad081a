"""The data fingerprint ignores what the harness writes under --out inside --data, and survives
dangling symlinks and unreadable files (issue 9, item 7)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from harness.fingerprint import fingerprint_tree


def data_folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "labels.json").write_text('{"a": 1}')
    return root


def test_runs_folder_inside_the_data_does_not_change_the_fingerprint(tmp_path: Path) -> None:
    root = data_folder(tmp_path)
    before = fingerprint_tree(root)
    out = root / "runs"
    run = out / "toy-echo-20261130-0000-abcd"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"run_id": run.name, "config": {"task": "toy"}}))
    (run / "samples.jsonl").write_text('{"sample_id": "s0"}\n')
    (run / "metrics.json").write_text("{}")
    sqlite3.connect(out / "cache.sqlite").execute("CREATE TABLE t (x)")
    (out / "leaderboard.sqlite").write_bytes(b"")
    (out / "artifacts" / "ab").mkdir(parents=True)
    (out / "artifacts" / "ab" / "cdef.png").write_bytes(b"png")
    assert fingerprint_tree(root) == before
    # --out at the data root itself: the harness files there are left out too
    sqlite3.connect(root / "cache.sqlite").execute("CREATE TABLE t (x)")
    assert fingerprint_tree(root) == before
    (root / "labels.json").write_text('{"a": 2}')  # the data itself still counts
    assert fingerprint_tree(root) != before


def test_a_data_file_named_manifest_without_a_run_id_still_counts(tmp_path: Path) -> None:
    root = data_folder(tmp_path)
    before = fingerprint_tree(root)
    (root / "subject1").mkdir()
    (root / "subject1" / "manifest.json").write_text('{"frames": 3}')
    assert fingerprint_tree(root) != before


def test_dangling_symlinks_and_unreadable_files_do_not_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = data_folder(tmp_path)
    os.symlink(root / "gone.json", root / "dangling.json")
    first = fingerprint_tree(root)
    assert fingerprint_tree(root) == first
    (root / "secret.txt").write_text("x")
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:  # root may read anything: refuse this one file as chmod 000 would
        if self.name == "secret.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert fingerprint_tree(root) != first


@pytest.mark.parametrize("name", ["cache.sqlite-wal", "leaderboard.sqlite-journal"])
def test_sqlite_side_files_of_the_harness_are_ignored(tmp_path: Path, name: str) -> None:
    root = data_folder(tmp_path)
    before = fingerprint_tree(root)
    (root / name).write_bytes(b"x")
    assert fingerprint_tree(root) == before
