"""What the board keeps beside the `runs`/`run_metrics` rows of harness.leaderboard: each accepted
submission's recomputed records (compressed JSONL, for paired tests and the sample browser), its
report (per-class tables, confusion matrices), its joint-bootstrap replicates of the headline metric
(for rank intervals), cached paired tests, and an append-only audit log of every submission attempt.

Everything of one accepted submission lands in one transaction, as `Leaderboard.add_run` does.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from harness.core import Record
from harness.leaderboard import Leaderboard, metadata_obj, runs_table
from harness.rundir import record_from_line, record_line
from harness.stats import Comparison, MetricValue

payloads_table = Table(
    "board_payloads",
    metadata_obj,
    Column("run_id", String(200), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("manifest", Text, nullable=False),
    Column("report", Text, nullable=False),
    Column("artifacts", Text, nullable=False),  # name -> sha256 digests the submitter declared
    Column("records", LargeBinary, nullable=False),  # zlib(JSONL) of the server-scored records
    Column("replicates", LargeBinary),  # float64 headline values on the board's shared resamples
    Column("n_boot", Integer, nullable=False),
    Column("seed", Integer, nullable=False),
)

plots_table = Table(
    "board_plots",
    metadata_obj,
    Column("run_id", String(200), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("png", LargeBinary, nullable=False),
)

audit_table = Table(
    "board_audit",
    metadata_obj,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False, index=True),
    Column("submitter", String(64), nullable=False, index=True),
    Column("run_id", String(200)),
    Column("task", String(64)),
    Column("protocol", String(64)),
    Column("digest", String(64)),
    Column("outcome", String(16), nullable=False),  # accepted | duplicate | refused
    Column("reason", Text, nullable=False),
)

paired_table = Table(
    "board_paired",
    metadata_obj,
    Column("run_a", String(200), primary_key=True),
    Column("run_b", String(200), primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("n_boot", Integer, primary_key=True),
    Column("a", Float),
    Column("b", Float),
    Column("diff", Float),
    Column("ci_low", Float),
    Column("ci_high", Float),
    Column("p_value", Float),
    Column("n_shared", Integer, nullable=False),
    Column("scale", Float, nullable=False),
)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def pack_records(records: list[Record]) -> bytes:
    return zlib.compress("\n".join(record_line(r) for r in records).encode(), 6)


def unpack_records(blob: bytes) -> list[Record]:
    text = zlib.decompress(blob).decode()
    return [record_from_line(line) for line in text.split("\n") if line]


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    digest: str
    manifest: dict[str, Any]
    report: dict[str, Any]
    artifacts: dict[str, str]
    n_boot: int
    seed: int
    row: dict[str, Any]  # the runs-table row


def _none_nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def _nan_none(x: float) -> float | None:
    return None if x != x else float(x)


class BoardStore(Leaderboard):
    """The leaderboard database with the board's own tables."""

    def add_submission(self, manifest: dict[str, Any], metrics: dict[str, MetricValue], headline: str, *,
                       submitter: str, digest: str, records: list[Record], report: dict[str, Any],
                       artifacts: dict[str, str], replicates: np.ndarray | None, n_boot: int, seed: int,
                       plots: dict[str, bytes] | None = None) -> None:
        with self.engine.begin() as conn:
            self.add_run(manifest, metrics, headline, conn=conn, origin="server", submitter=submitter)
            conn.execute(insert(payloads_table).values(
                run_id=manifest["run_id"], digest=digest, manifest=json.dumps(manifest, sort_keys=True),
                report=json.dumps(report, sort_keys=True), artifacts=json.dumps(artifacts, sort_keys=True),
                records=pack_records(records),
                replicates=None if replicates is None else np.asarray(replicates, dtype="<f8").tobytes(),
                n_boot=n_boot, seed=seed,
            ))
            if plots:
                conn.execute(insert(plots_table), [{"run_id": manifest["run_id"], "name": k, "png": v}
                                                   for k, v in plots.items()])

    def audit(self, *, submitter: str, outcome: str, reason: str, run_id: str | None = None,
              task: str | None = None, protocol: str | None = None, digest: str | None = None) -> None:
        """Append one line to the audit log (the code never updates or deletes audit rows)."""
        with self.engine.begin() as conn:
            conn.execute(insert(audit_table).values(
                at=utc_now(), submitter=submitter, run_id=run_id, task=task, protocol=protocol, digest=digest,
                outcome=outcome, reason=reason[:2000]))

    def audit_rows(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_table).order_by(audit_table.c.id.desc()).limit(limit)).mappings()
            return [dict(r) for r in rows]

    def submissions_today(self, submitter: str) -> int:
        """Attempts that count against the daily quota: every audited attempt of this UTC day except
        the idempotent repeats of a run already on the board."""
        day = dt.datetime.now(dt.UTC).date().isoformat()
        q = select(func.count()).select_from(audit_table).where(
            audit_table.c.submitter == submitter, audit_table.c.at >= day, audit_table.c.outcome != "duplicate")
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def attempts(self, task: str) -> dict[str, int]:
        """Submission attempts per submitter for one task (accepted or refused)."""
        q = (select(audit_table.c.submitter, func.count()).where(audit_table.c.task == task,
             audit_table.c.outcome != "duplicate").group_by(audit_table.c.submitter))
        with self.engine.connect() as conn:
            return {s: int(n) for s, n in conn.execute(q)}

    def digest_of(self, run_id: str) -> str | None:
        with self.engine.connect() as conn:
            d = conn.execute(select(payloads_table.c.digest).where(payloads_table.c.run_id == run_id)).scalar()
            if d is None and conn.execute(select(runs_table.c.run_id).where(runs_table.c.run_id == run_id)).first():
                return ""  # a local row of that id, without a payload
            return d

    def run(self, run_id: str) -> StoredRun | None:
        q = select(runs_table, payloads_table.c.digest, payloads_table.c.manifest, payloads_table.c.report,
                   payloads_table.c.artifacts, payloads_table.c.n_boot, payloads_table.c.seed).select_from(
            runs_table.outerjoin(payloads_table, payloads_table.c.run_id == runs_table.c.run_id)
        ).where(runs_table.c.run_id == run_id)
        with self.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        if r is None:
            return None
        row = {k: r[k] for k in runs_table.c.keys()}
        manifest = json.loads(r["manifest"]) if r["manifest"] else {"run_id": run_id, "config": json.loads(r["config"])}
        return StoredRun(run_id, r["digest"] or "", manifest, json.loads(r["report"] or "{}"),
                         json.loads(r["artifacts"] or "{}"), r["n_boot"] or 0, r["seed"] or 0, row)

    def records(self, run_id: str) -> list[Record]:
        with self.engine.connect() as conn:
            blob = conn.execute(select(payloads_table.c.records).where(payloads_table.c.run_id == run_id)).scalar()
        return unpack_records(blob) if blob else []

    def plot_names(self, run_id: str) -> list[str]:
        with self.engine.connect() as conn:
            q = select(plots_table.c.name).where(plots_table.c.run_id == run_id).order_by(plots_table.c.name)
            return [n for (n,) in conn.execute(q)]

    def plot(self, run_id: str, name: str) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.execute(select(plots_table.c.png).where(
                plots_table.c.run_id == run_id, plots_table.c.name == name)).scalar()

    def version(self) -> tuple[int, int]:
        """Changes whenever a row or an audit line is added (cache key of the task pages)."""
        with self.engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(runs_table)).scalar_one()
            last = conn.execute(select(func.max(audit_table.c.id))).scalar()
        return int(n), int(last or 0)

    def counts(self) -> dict[str, dict[str, int]]:
        """task -> protocol -> number of measured rows."""
        q = select(runs_table.c.task, runs_table.c.protocol, func.count()).group_by(
            runs_table.c.task, runs_table.c.protocol)
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for task, protocol, n in conn.execute(q):
                out.setdefault(task, {})[protocol] = int(n)
        return out

    def replicates(self, run_ids: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(run_ids), 500):
                q = select(payloads_table.c.run_id, payloads_table.c.replicates).where(
                    payloads_table.c.run_id.in_(run_ids[i:i + 500]))
                for rid, blob in conn.execute(q):
                    if blob:
                        out[rid] = np.frombuffer(blob, dtype="<f8")
        return out

    def paired(self, run_a: str, run_b: str, metric: str, n_boot: int) -> Comparison | None:
        c = paired_table.c
        q = select(paired_table).where(c.run_a == run_a, c.run_b == run_b, c.metric == metric, c.n_boot == n_boot)
        with self.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        if r is None:
            return None
        return Comparison(metric, _none_nan(r["a"]), _none_nan(r["b"]), _none_nan(r["diff"]), _none_nan(r["ci_low"]),
                          _none_nan(r["ci_high"]), _none_nan(r["p_value"]), r["n_shared"], r["scale"])

    def save_paired(self, run_a: str, run_b: str, n_boot: int, comp: Comparison) -> None:
        values = dict(run_a=run_a, run_b=run_b, metric=comp.metric, n_boot=n_boot, a=_nan_none(comp.a),
                      b=_nan_none(comp.b), diff=_nan_none(comp.diff), ci_low=_nan_none(comp.ci_low),
                      ci_high=_nan_none(comp.ci_high), p_value=_nan_none(comp.p_value), n_shared=comp.n_shared,
                      scale=comp.scale)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(paired_table).values(**values))
        except IntegrityError:  # a concurrent request stored the same pair first
            pass
