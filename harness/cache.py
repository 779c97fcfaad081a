"""Per-sample result cache in SQLite: predictions, never scores (and model-made scores by their own key).

A finished sample's prediction (its record without scores) is keyed by a scope — task, protocol,
fold, solver identity hash, data fingerprint — and the sample's key. The solver identity holds the
task's and the solver's `version`, the canonical options, a digest of the prompts it sends and, for
model solvers, the endpoint and model, so a changed prompt, version or endpoint misses the cache.
Every run re-scores cached predictions with the current scorer. Scores that need models (a face
recogniser, MLLM judges) are expensive, so they are cached too, keyed by the prediction, the
scorer's version and the role models (`score_key`).

Writes never block the event loop: one writer thread owns a second connection, stores whatever
has queued up in one transaction, and on failure (a locked or unwritable file) rolls back, keeps the
batch and retries with back-off. A cache that stays unwritable is reported once, and `close()`
raises `CacheWriteError` at the end of the run, after the run's own files are written.
Errored samples are never cached: a re-run retries them.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from harness.core import HarnessError, Record
from harness.fingerprint import config_hash
from harness.rundir import record_from_line

log = logging.getLogger(__name__)
T = TypeVar("T")

CACHE_VERSION = 3  # bump when the stored record format changes
SCHEMA = """
CREATE TABLE IF NOT EXISTS scopes (
  scope TEXT PRIMARY KEY,  -- hash of the five fields below
  task TEXT NOT NULL, protocol TEXT NOT NULL, fold TEXT NOT NULL, solver_hash TEXT NOT NULL,
  data_fingerprint TEXT NOT NULL, created TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS predictions (
  scope TEXT NOT NULL, sample_key TEXT NOT NULL,
  record TEXT NOT NULL,  -- the sample's samples.jsonl line without scores
  PRIMARY KEY (scope, sample_key)
);
CREATE TABLE IF NOT EXISTS scores (
  score_key TEXT PRIMARY KEY,  -- hash of (scorer identity, prediction, artifacts)
  scores TEXT NOT NULL
)
"""
BUSY_TIMEOUT_S = 0.5  # per attempt; the writer retries, so a long lock never stalls a run silently
MAX_BACKOFF_S = 2.0


class CacheWriteError(HarnessError):
    """The cache stayed unwritable: the run's files are complete, but a re-run will recompute."""


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


def sample_key(split: str, sample_id: str) -> str:
    return sample_id if split == "test" else f"{split}\0{sample_id}"


def retry_locked(fn: Callable[[], T], seconds: float = 30.0) -> T:
    """Run `fn`, retrying while another process holds the file: some statements (switching to WAL,
    schema changes) get SQLITE_BUSY at once instead of waiting out the busy timeout."""
    deadline, pause = time.monotonic() + seconds, 0.02
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(0.5, pause * 2)


def connect_sqlite(path: Path, timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":  # WAL is kept in the file
        retry_locked(lambda: db.execute("PRAGMA journal_mode=WAL"))
    # The OS keeps written pages when the process is killed; only a machine crash can lose the last
    # commits, which a re-run then recomputes.
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class _Writer(threading.Thread):
    """Stores queued rows in one transaction per wake-up; keeps and retries them until stored."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="harness-cache-writer", daemon=True)
        self.path = path
        self.inbox: queue.Queue[tuple[str, list[tuple]] | None] = queue.Queue()
        self.pending_scopes: list[tuple] = []
        self.pending_preds: list[tuple] = []
        self.pending_scores: list[tuple] = []
        self.error: str | None = None  # the last failure while something is still unwritten
        self.warned = False
        self.stop_deadline: float | None = None
        self._db: sqlite3.Connection | None = None

    def _drain(self, block: bool, wait: float) -> bool:
        """Move queued items to the pending lists; False once the stop sentinel was seen."""
        running = True
        try:
            item = self.inbox.get(timeout=wait) if block else self.inbox.get_nowait()
            while True:
                if item is None:
                    running = False
                else:
                    kind, rows = item
                    if kind == "scope":
                        self.pending_scopes.extend(rows)
                    elif kind == "pred":
                        self.pending_preds.extend(rows)
                    else:
                        self.pending_scores.extend(rows)
                item = self.inbox.get_nowait()
        except queue.Empty:
            pass
        return running

    def _store(self) -> None:
        if self._db is None:
            self._db = connect_sqlite(self.path, BUSY_TIMEOUT_S)
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO scopes VALUES (?,?,?,?,?,?, datetime('now'))", self.pending_scopes)
            db.executemany("INSERT OR REPLACE INTO predictions VALUES (?,?,?)", self.pending_preds)
            db.executemany("INSERT OR REPLACE INTO scores VALUES (?,?)", self.pending_scores)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        self.pending_scopes, self.pending_preds, self.pending_scores = [], [], []

    def has_pending(self) -> bool:
        return bool(self.pending_preds or self.pending_scores or self.pending_scopes)

    def run(self) -> None:
        running, backoff = True, 0.05
        while running or self.has_pending():
            running = self._drain(block=running and not self.has_pending(), wait=0.2) and running
            if not self.has_pending():
                continue
            try:
                self._store()
                self.error, backoff = None, 0.05
            except (sqlite3.Error, OSError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                if not self.warned:
                    self.warned = True
                    log.warning("result cache %s not writable (%s); keeping finished samples and retrying",
                                self.path, self.error)
                if self.stop_deadline is not None and time.monotonic() > self.stop_deadline:
                    break
                time.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
        if self._db is not None:
            self._db.close()


class ResultCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._db = retry_locked(lambda: connect_sqlite(path, 30))
            retry_locked(self._migrate)
        except sqlite3.Error as exc:
            raise HarnessError(f"result cache {path}: {exc} (pass --no-cache or another --out)") from exc
        self._writer = _Writer(path)
        self._writer.start()
        self._known_scopes: set[str] = set()

    def _migrate(self) -> None:
        """Create the tables, or start afresh over a cache of another harness version (it is only a cache).
        One transaction, so runs starting together into one --out never see half a schema."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] == CACHE_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._db.execute("PRAGMA user_version").fetchone()[0] != CACHE_VERSION:
                for table in ("results", "predictions", "scores", "scopes"):
                    self._db.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={CACHE_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def lookup(self, scope: CacheScope, keys: Sequence[str]) -> dict[str, tuple[Record, str]]:
        """Cached (record without scores, JSON line) pairs of this scope for the given sample keys."""
        rows = self._db.execute("SELECT sample_key, record FROM predictions WHERE scope=?", (scope.key(),)).fetchall()
        wanted = set(keys)
        return {k: (record_from_line(line, cached=True), line) for k, line in rows if k in wanted}

    def store(self, scope: CacheScope, items: Iterable[tuple[str, Record, str]]) -> None:
        """Queue finished (sample key, record, prediction line) triples; errored records are skipped."""
        key = scope.key()
        rows = [(key, k, line) for k, r, line in items if r.ok]
        if not rows:
            return
        if key not in self._known_scopes:
            self._known_scopes.add(key)
            self._writer.inbox.put(("scope", [(key, *scope.fields())]))
        self._writer.inbox.put(("pred", rows))

    def lookup_scores(self, score_keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for i in range(0, len(score_keys), 500):
            chunk = list(score_keys[i : i + 500])
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(f"SELECT score_key, scores FROM scores WHERE score_key IN ({marks})",
                                          chunk).fetchall())
        return found

    def store_scores(self, rows: Iterable[tuple[str, str]]) -> None:
        rows = list(rows)
        if rows:
            self._writer.inbox.put(("scores", rows))

    def clear(self, scope: CacheScope) -> None:
        self._db.execute("DELETE FROM predictions WHERE scope=?", (scope.key(),))

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait for queued writes (retrying for up to `timeout_s` if the file is locked or unwritable)."""
        self._writer.stop_deadline = time.monotonic() + timeout_s
        self._writer.inbox.put(None)
        self._writer.join()
        self._db.close()
        if self._writer.has_pending():
            n = len(self._writer.pending_preds) + len(self._writer.pending_scores)
            raise CacheWriteError(
                f"result cache {self.path} stayed unwritable ({self._writer.error}): {n} finished results were not "
                "cached. The run's files are complete; a re-run will recompute those samples.")
