"""Data fingerprints: annotations by content, media by name/size/mtime (never read at start-up)."""

from __future__ import annotations

import os

from harness.fingerprint import fingerprint_tree


def test_annotation_content_changes_the_fingerprint_media_content_is_not_read(tmp_path):
    (tmp_path / "labels.json").write_text('{"a": 1}')
    frame = tmp_path / "frames" / "0001.png"
    frame.parent.mkdir()
    frame.write_bytes(b"x" * 100)
    first = fingerprint_tree(tmp_path)
    assert fingerprint_tree(tmp_path) == first
    st = (tmp_path / "labels.json").stat()
    (tmp_path / "labels.json").write_text('{"a": 2}')  # same size, same mtime: content decides
    os.utime(tmp_path / "labels.json", ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = fingerprint_tree(tmp_path)
    assert changed != first
    st = frame.stat()
    frame.write_bytes(b"y" * 100)  # same size and mtime: a media file is not re-read
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_tree(tmp_path) == changed
    frame.write_bytes(b"y" * 101)  # but a replaced frame of another size is seen
    assert fingerprint_tree(tmp_path) != changed
