"""`harness doctor`: one line per check, a fix hint for every problem, a non-zero exit on failures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from harness import doctor
from harness.cli import main
from tests.servers.faulty_openai import FaultyServer


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_cli_prints_one_line_per_check_with_hints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--no-gpu", "--out", str(tmp_path / "runs")])
    lines = capsys.readouterr().out.strip().splitlines()
    checks, summary = lines[:-1], lines[-1]
    assert checks and all(line.split()[0] in ("OK", "WARN", "FAIL") for line in checks)
    assert all("-> fix:" in line for line in checks if not line.startswith("OK"))
    names = [line.split(":")[0].split(maxsplit=1)[1] for line in checks]
    for expected in ("python", "packages", "opencv cascades", "runs folder", "leaderboard", "data sarcasm", "endpoint"):
        assert expected in names
    assert "data sarcasm: found at" in "\n".join(checks)  # the shipped MUStARD copy
    assert summary.endswith("failed" if code else "ready")


def test_endpoint_reachable_and_unreachable(tmp_path: Path) -> None:
    with FaultyServer("ok") as srv:
        ok = doctor.check_endpoint(srv.base_url, None)
    assert ok.status == doctor.OK and "faulty" in ok.detail
    down = doctor.check_endpoint(srv.base_url, None, timeout_s=1)
    assert down.status == doctor.FAIL and srv.base_url in down.detail and "vllm serve" in down.hint


def test_unwritable_runs_folder_and_locked_cache_fail(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert doctor.check_runs_folder(blocker / "runs").status == doctor.FAIL
    out = tmp_path / "runs"
    out.mkdir()
    holder = sqlite3.connect(out / "cache.sqlite", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        check = doctor.check_runs_folder(out)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert check.status == doctor.FAIL and "cache.sqlite" in check.detail
    assert doctor.check_runs_folder(out).status == doctor.OK


def test_opencv_without_cascades_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path))
    check = doctor.check_opencv()
    assert check.status == doctor.FAIL and "<5" in check.hint


def test_board_url_errors_mask_the_password(tmp_path: Path) -> None:
    check = doctor.check_board("postgresql+psycopg://alice:s3cret@127.0.0.1:1/harness")
    assert check.status == doctor.FAIL and "s3cret" not in check.line() and "***" in check.detail
    assert doctor.check_board(f"sqlite:///{tmp_path}/board.sqlite").status == doctor.OK


def test_missing_data_is_a_warning_with_a_hint(tmp_path: Path) -> None:
    checks = by_name(doctor.check_data(tmp_path))
    assert checks["data sarcasm"].status == doctor.WARN and "HARNESS_DATA" in checks["data sarcasm"].hint
    assert by_name(doctor.check_data(None))["data sarcasm"].status == doctor.OK  # shipped copy
