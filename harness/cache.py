"""Per-sample result cache in SQLite.

A finished sample is keyed by (task, protocol, fold, solver-config hash, sample id, data
fingerprint). Rows are written in small transactions as samples finish (all samples completed in
one event-loop turn share a commit), so `kill -9` loses at most the samples in flight. Errored
samples are not cached: a re-run retries them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core import Record
from harness.rundir import dumps

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
  task TEXT NOT NULL, protocol TEXT NOT NULL, fold TEXT NOT NULL, solver_hash TEXT NOT NULL,
  data_fingerprint TEXT NOT NULL, sample_id TEXT NOT NULL,
  prediction TEXT NOT NULL, scores TEXT NOT NULL, info TEXT NOT NULL, latency_s REAL NOT NULL,
  created TEXT NOT NULL DEFAULT (datetime('now')),
  PRIMARY KEY (task, protocol, fold, solver_hash, data_fingerprint, sample_id)
)
"""


@dataclass(frozen=True)
class CacheScope:
    """The part of the key shared by all samples of one fold of one run."""

    task: str
    protocol: str
    fold: str
    solver_hash: str
    data_fingerprint: str

    def key(self) -> tuple[str, str, str, str, str]:
        return (self.task, self.protocol, self.fold, self.solver_hash, self.data_fingerprint)


class ResultCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # The OS keeps written pages when the process is killed; only a machine crash can lose
        # the last commits, which a re-run then recomputes.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)

    def lookup(self, scope: CacheScope, sample_ids: Sequence[str]) -> dict[str, Record]:
        """Cached records of this scope for the given ids (fold, target and groups filled by caller)."""
        rows = self._db.execute(
            "SELECT sample_id, prediction, scores, info, latency_s FROM results WHERE task=? AND protocol=?"
            " AND fold=? AND solver_hash=? AND data_fingerprint=?",
            scope.key(),
        ).fetchall()
        wanted = set(sample_ids)
        out = {}
        for sid, pred, scores, info, latency in rows:
            if sid in wanted:
                out[sid] = Record(
                    sample_id=sid,
                    fold=scope.fold,
                    target=None,
                    prediction=json.loads(pred),
                    scores=json.loads(scores),
                    info=json.loads(info),
                    latency_s=latency,
                    cached=True,
                )
        return out

    def store(self, scope: CacheScope, records: Iterable[Record]) -> None:
        rows = [
            (
                *scope.key(),
                r.sample_id,
                dumps(r.prediction),
                dumps(r.scores),
                dumps(r.info),
                r.latency_s,
            )
            for r in records
            if r.ok
        ]
        if not rows:
            return
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT OR REPLACE INTO results (task, protocol, fold, solver_hash, data_fingerprint, sample_id,"
            " prediction, scores, info, latency_s) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        self._db.execute("COMMIT")

    def clear(self, scope: CacheScope) -> None:
        self._db.execute(
            "DELETE FROM results WHERE task=? AND protocol=? AND fold=? AND solver_hash=? AND data_fingerprint=?",
            scope.key(),
        )

    def close(self) -> None:
        self._db.close()
