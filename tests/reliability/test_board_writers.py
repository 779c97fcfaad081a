"""Concurrent writers on one runs folder and one board, on SQLite and on a real PostgreSQL (issue 9):
no lost rows, no duplicates, no tracebacks; a lock held past SQLite's 5 s default wait does not lose a
run; insert errors are one-line errors after the run's files are written.

PostgreSQL: `.ci/run` starts a cluster and exports HARNESS_TEST_PG_URL (a SQLAlchemy URL); each test
gets a fresh database in it. Without the variable the PostgreSQL cases skip, or fail in CI.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from harness.core import HarnessError
from harness.leaderboard import Leaderboard
from harness.stats import MetricValue
from tests.toy_task import write_items

REPO = Path(__file__).resolve().parents[2]
PG_ENV = "HARNESS_TEST_PG_URL"


def _fresh_pg_database(admin_url: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    name = f"harness_t_{secrets.token_hex(4)}"
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def board_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'board.sqlite'}"
        return
    admin = os.environ.get(PG_ENV)
    if not admin:
        message = f"{PG_ENV} is not set (.ci/run starts a PostgreSQL and sets it)"
        if os.environ.get("CI"):
            pytest.fail(message + "; in CI this is a failure")
        pytest.skip(message)
    yield from _fresh_pg_database(admin)


def manifest(run_id: str) -> dict:
    return {"run_id": run_id, "config": {"task": "toy", "protocol": "all", "solver": "echo", "model": None},
            "config_hash": "h", "data_fingerprint": "f", "n_samples": 3, "n_errors": 0, "seed": 0,
            "started": "2026-11-30T00:00:00", "finished": "2026-11-30T00:00:01"}


METRICS = {"accuracy": MetricValue(name="accuracy", value=0.5, ci_low=0.4, ci_high=0.6, n=3)}


def _add_runs(url: str, prefix: str, n: int) -> int:
    board = Leaderboard(url)
    for i in range(n):
        board.add_run(manifest(f"{prefix}-{i}"), METRICS, headline="accuracy")
    return n


def test_many_processes_add_runs_at_once(board_url: str) -> None:
    with ProcessPoolExecutor(max_workers=6) as pool:
        done = list(pool.map(_add_runs, [board_url] * 6, [f"w{k}" for k in range(6)], [5] * 6))
    assert sum(done) == 30
    rows = Leaderboard(board_url).measured("toy")
    assert sorted(r.source for r in rows) == sorted(f"w{k}-{i}" for k in range(6) for i in range(5))
    assert all(r.metrics["accuracy"]["value"] == pytest.approx(0.5) for r in rows)


def test_concurrent_cli_runs_into_one_out_and_one_board(tmp_path: Path, board_url: str) -> None:
    data = write_items(tmp_path / "toy", 40)
    out = tmp_path / "runs"
    code = "import sys, tests.toy_task; from harness.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "run", "--task", "toy", "--solver", "slow", "-S", "delay=0.01",
            "--data", str(data), "--out", str(out), "--db", board_url, "--no-progress", "--bootstrap", "50"]
    procs = [subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    runs = sorted(p for p in out.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert len(runs) == 4
    for run in runs:
        samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
        assert sorted(s["sample_id"] for s in samples) == sorted(f"s{i}" for i in range(40))  # each once
        assert json.loads((run / "metrics.json").read_text())["metrics"]["accuracy"]["value"] == 1.0
    rows = Leaderboard(board_url).measured("toy")
    assert sorted(r.source for r in rows) == sorted(r.name for r in runs)  # one row per run, none lost


def test_a_sqlite_lock_held_past_the_default_wait_does_not_lose_the_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'board.sqlite'}"
    board = Leaderboard(url)
    holder = sqlite3.connect(tmp_path / "board.sqlite", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # e.g. another run's long transaction, or a backup
    release = threading.Timer(6.0, lambda: holder.execute("ROLLBACK"))
    release.start()
    start = time.monotonic()
    try:
        board.add_run(manifest("late"), METRICS, headline="accuracy")
    finally:
        release.join()
        holder.close()
    assert time.monotonic() - start >= 5.5
    assert [r.source for r in board.measured("toy")] == ["late"]


def test_insert_errors_are_one_line_errors_after_the_files_are_written(
    tmp_path: Path, board_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    board = Leaderboard(board_url)
    board.add_run(manifest("dup"), METRICS, headline="accuracy")
    with pytest.raises(HarnessError, match="already holds run 'dup'"):
        board.add_run(manifest("dup"), METRICS, headline="accuracy")
    if not board_url.startswith("sqlite"):
        return
    db = sqlite3.connect(board_url.removeprefix("sqlite:///"))
    db.execute("CREATE TRIGGER full BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    db.commit()
    db.close()
    import tests.toy_task  # noqa: F401 - registers the toy task
    from harness.cli import main

    data = write_items(tmp_path / "toy", 6)
    out = tmp_path / "runs"
    code = main(["run", "--task", "toy", "--data", str(data), "--out", str(out), "--db", board_url, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "disk is full" in err and "its files are written" in err
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    assert json.loads((run / "metrics.json").read_text())["n_samples"] == 6
