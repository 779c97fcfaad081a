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


def test_a_copy_with_new_mtimes_keeps_the_portable_fingerprint_and_changes_the_local_one(tmp_path):
    import shutil

    from harness.fingerprint import data_fingerprints

    src = tmp_path / "src"
    (src / "frames").mkdir(parents=True)
    (src / "labels.json").write_text('{"a": 1}')
    (src / "frames" / "0001.png").write_bytes(b"x" * 100)
    os.utime(src / "frames" / "0001.png", ns=(1_000_000_000, 1_000_000_000))
    # a download or a plain `cp -r`: same names, sizes and content, new modification times
    copy = tmp_path / "copy"
    shutil.copytree(src, copy, copy_function=shutil.copyfile)
    a, b = data_fingerprints(src), data_fingerprints(copy)
    assert a.portable == b.portable == fingerprint_tree(copy)
    assert a.local != b.local
    # a frame replaced in place by one of the same size: the portable hash cannot see it, the local one does
    before = data_fingerprints(copy)
    (copy / "frames" / "0001.png").write_bytes(b"z" * 100)
    os.utime(copy / "frames" / "0001.png", ns=(2_000_000_000, 2_000_000_000))
    after = data_fingerprints(copy)
    assert after.portable == before.portable and after.local != before.local
