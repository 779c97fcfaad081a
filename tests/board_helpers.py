"""Run folders for the board tests, written the way `harness run` writes them (manifest.json +
samples.jsonl) from predictions chosen by the test, on the sarcasm task's shipped MUStARD data."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.board.app import BoardSettings, create_app, token_hash
from harness.board.ingest import ServerTask, load_server_task

TASK, PROTOCOL = "sarcasm", "speaker-dependent"
TOKENS = {"alice": "alice-token-0123456789abcdef", "bob": "bob-token-0123456789abcdef"}
_SERVER: dict[str, ServerTask] = {}


def server_task() -> ServerTask:
    if "t" not in _SERVER:
        _SERVER["t"] = load_server_task(TASK, PROTOCOL, None)
    return _SERVER["t"]


def write_run(root: Path, run_id: str, predict: Callable[[str, str, bool], Any], *, solver: str = "tfidf",
              options: dict[str, Any] | None = None, manifest: dict[str, Any] | None = None) -> Path:
    """A finished run folder whose prediction for each test sample is predict(fold, sample_id, target)."""
    st = server_task()
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    lines = []
    for split, fold, sid in st.order:
        target = bool(st.samples[(split, fold, sid)].target)
        lines.append({"cached": False, "sample_id": sid, "fold": fold, "split": split, "target": target,
                      "prediction": predict(fold, sid, target), "groups": {}, "info": {}, "artifacts": {},
                      "error": None, "latency_s": 0.0, "scores": {}})
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    data = {
        "run_id": run_id, "config": {"task": TASK, "protocol": PROTOCOL, "solver": solver,
                                     "solver_options": options or {}, "model": None, "judges": [], "roles": [],
                                     "limit": None, "seed": 0, "n_boot": 1000},
        "config_hash": "0" * 16, "task_version": "1", "scorer_version": "1", "data_fingerprint": st.fingerprint,
        "status": "finished", "n_samples": len(lines), "n_errors": 0, "seed": 0,
        "started": "2026-11-30T00:00:00+00:00", "finished": "2026-11-30T00:00:01+00:00",
    }
    data.update(manifest or {})
    (run_dir / "manifest.json").write_text(json.dumps(data, indent=2))
    # what a cheater would write: a perfect score (the board must never read it)
    (run_dir / "metrics.json").write_text(json.dumps({"metrics": {"weighted_f1": {"value": 1.0}}}))
    return run_dir


def settings(db_url: str, **kw: Any) -> BoardSettings:
    base = dict(db_url=db_url, tokens={token_hash(t): name for name, t in TOKENS.items()}, n_boot=100,
                paired_boot=200)
    base.update(kw)
    return BoardSettings(**base)


def auth(name: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def db_urls(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'board.sqlite'}"


def pg_url() -> str | None:
    return os.environ.get("HARNESS_TEST_PG_URL") or None


@contextmanager
def fresh_db(url: str) -> Iterator[str]:
    """A database with the board's tables dropped first (PostgreSQL keeps them between tests)."""
    from sqlalchemy import create_engine

    from harness.board import store  # noqa: F401 - registers the board's tables on the metadata
    from harness.leaderboard import metadata_obj

    engine = create_engine(url)
    metadata_obj.drop_all(engine)
    engine.dispose()
    yield url


__all__ = ["create_app"]
