"""Per-sample result cache in SQLite.

A finished sample's record (its samples.jsonl line) is keyed by (task, protocol, fold,
solver-config hash, sample id, data fingerprint). Rows are written in small transactions as
samples finish (all samples completed in one event-loop turn share a commit), so `kill -9` loses
at most the samples in flight. Errored samples are not cached: a re-run retries them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core import Record
from harness.fingerprint import config_hash
from harness.rundir import record_from_line

CACHE_VERSION = 2  # bump when the stored record format changes
SCHEMA = """
CREATE TABLE IF NOT EXISTS scopes (
  scope TEXT PRIMARY KEY,  -- hash of the five fields below
  task TEXT NOT NULL, protocol TEXT NOT NULL, fold TEXT NOT NULL, solver_hash TEXT NOT NULL,
  data_fingerprint TEXT NOT NULL, created TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS results (
  scope TEXT NOT NULL, sample_id TEXT NOT NULL,
  record TEXT NOT NULL,  -- the sample's samples.jsonl line, serialised once
  PRIMARY KEY (scope, sample_id)
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

    def fields(self) -> tuple[str, str, str, str, str]:
        return (self.task, self.protocol, self.fold, self.solver_hash, self.data_fingerprint)

    def key(self) -> str:
        return config_hash(self.fields(), length=32)


class ResultCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # The OS keeps written pages when the process is killed; only a machine crash can lose
        # the last commits, which a re-run then recomputes.
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version != CACHE_VERSION:
            # A cache written by another harness version: it is only a cache, so start it afresh.
            self._db.executescript("DROP TABLE IF EXISTS results; DROP TABLE IF EXISTS scopes;")
            self._db.execute(f"PRAGMA user_version={CACHE_VERSION}")
        self._db.executescript(SCHEMA)

    def lookup(self, scope: CacheScope, sample_ids: Sequence[str]) -> dict[str, tuple[Record, str]]:
        """Cached (record, JSON line) pairs of this scope for the given ids."""
        rows = self._db.execute("SELECT sample_id, record FROM results WHERE scope=?", (scope.key(),)).fetchall()
        wanted = set(sample_ids)
        return {sid: (record_from_line(line, cached=True), line) for sid, line in rows if sid in wanted}

    def store(self, scope: CacheScope, items: Iterable[tuple[Record, str]]) -> None:
        """Persist finished (record, JSON line) pairs in one transaction; errored records are skipped."""
        key = scope.key()
        rows = [(key, r.sample_id, line) for r, line in items if r.ok]
        if not rows:
            return
        self._db.execute("BEGIN")
        self._db.execute("INSERT OR IGNORE INTO scopes VALUES (?,?,?,?,?,?, datetime('now'))", (key, *scope.fields()))
        self._db.executemany("INSERT OR REPLACE INTO results (scope, sample_id, record) VALUES (?,?,?)", rows)
        self._db.execute("COMMIT")

    def clear(self, scope: CacheScope) -> None:
        self._db.execute("DELETE FROM results WHERE scope=?", (scope.key(),))

    def close(self) -> None:
        self._db.close()
