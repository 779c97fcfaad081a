"""The leaderboard: measured runs in a SQL database (SQLAlchemy: SQLite by default, PostgreSQL for a
lab-wide board) and reference rows from the papers, read from data files under `leaderboards/`.

A run lands in one transaction (its row and its metric rows together) only after it finished, so an
interrupted or failing run never leaves a partial row. Reference rows are never stored with measured
ones; they are read from `leaderboards/references/<task>.toml` and always labelled as references.
"""

from __future__ import annotations

import json
import random
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    inspect,
    select,
    text,
)

from harness.core import DataError, HarnessError
from harness.stats import MetricValue

metadata_obj = MetaData()

runs_table = Table(
    "runs",
    metadata_obj,
    Column("run_id", String(200), primary_key=True),
    Column("task", String(64), nullable=False, index=True),
    Column("protocol", String(64), nullable=False),
    Column("solver", String(128), nullable=False),
    Column("model", String(256)),
    Column("config_hash", String(32), nullable=False),
    Column("data_fingerprint", String(32), nullable=False),
    Column("headline", String(64)),
    Column("n_samples", Integer, nullable=False),
    Column("n_errors", Integer, nullable=False),
    Column("seed", Integer),
    Column("git_commit", String(64)),
    Column("started", String(40)),
    Column("finished", String(40)),
    Column("config", Text, nullable=False),
    # Added for the shared board (older databases gain them in `_add_missing_columns`): rows of
    # different scorer versions are never ranked together; `origin` is "local" (harness run) or
    # "server" (a submission the board re-scored itself); `submitter` names the token's owner.
    Column("scorer_version", String(32)),
    Column("task_version", String(32)),
    Column("origin", String(16)),
    Column("submitter", String(64)),
)

metrics_table = Table(
    "run_metrics",
    metadata_obj,
    Column("run_id", String(200), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", Float),
    Column("ci_low", Float),
    Column("ci_high", Float),
    Column("scale", Float, nullable=False, default=1.0),
    Column("higher_is_better", Integer, nullable=False, default=1),
)


def protocol_label(protocol: str, options: dict[str, Any] | None) -> str:
    """The board's protocol name: protocol options that change the folds are part of it (never ranked
    with the default), e.g. `il[order=I,O,M,C]`."""
    if not options:
        return protocol
    return protocol + "[" + ",".join(f"{k}={v}" for k, v in sorted(options.items())) + "]"


def default_db_url(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / 'leaderboard.sqlite').resolve()}"


@dataclass
class BoardRow:
    """One line of the board: a measured run or a reference from a paper."""

    kind: str  # "measured" | "reference"
    task: str
    protocol: str
    method: str
    metrics: dict[str, dict[str, float | None]]  # name -> {value, ci_low, ci_high (display units), higher_is_better}
    source: str = ""  # run id, or paper + table
    n_samples: int | None = None
    n_errors: int | None = None
    verified: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


SQLITE_BUSY_TIMEOUT_S = 30.0  # SQLite's own default is 5 s: concurrent runs finishing together would fail
WRITE_ATTEMPTS = 5  # a locked/serialisation-failed insert is retried with back-off this many times


def masked_url(url: str) -> str:
    """The URL with its password replaced by ***, for messages (`postgresql://u:***@host/db`)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: show no part that could hold a secret
        return url.split("@")[-1] if "@" in url else url


def _engine(url: str) -> Any:
    if url.startswith("sqlite"):
        return create_engine(url, future=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    return create_engine(url, future=True, pool_pre_ping=True)


def _retry(what: str, fn: Any, *, ddl: bool = False) -> Any:
    """Run `fn` again after a lock or a lost race (SQLite busy, PostgreSQL serialisation/DDL races:
    two processes creating the same table make the loser fail on a catalog unique index, hence `ddl`)."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(WRITE_ATTEMPTS):
        try:
            return fn()
        except IntegrityError:
            if not ddl or attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * 2**attempt + random.uniform(0, 0.05))
        except (OperationalError, ProgrammingError):
            if attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * 2**attempt + random.uniform(0, 0.05))
    raise AssertionError(what)


class Leaderboard:
    def __init__(self, url: str) -> None:
        self.url = masked_url(url)
        try:
            self.engine = _engine(url)

            def create() -> None:
                metadata_obj.create_all(self.engine)
                _add_missing_columns(self.engine)

            _retry("create tables", create, ddl=True)  # N runs finishing at once race to create the tables
        except Exception as exc:
            raise HarnessError(f"cannot open leaderboard database {self.url}: {_short(exc)}") from None

    def add_run(self, manifest: dict[str, Any], metrics: dict[str, MetricValue], headline: str, *,
                conn: Any = None, origin: str = "local", submitter: str | None = None) -> None:
        """Store a finished run; with `conn`, inside the caller's transaction (the board adds its
        own tables' rows in the same one)."""
        if conn is None:
            from sqlalchemy.exc import IntegrityError, SQLAlchemyError

            def write() -> None:
                with self.engine.begin() as own:  # one transaction: the whole row or nothing
                    self.add_run(manifest, metrics, headline, conn=own, origin=origin, submitter=submitter)

            try:
                _retry("add run", write)
            except IntegrityError as exc:
                if any(word in str(exc).lower() for word in ("unique", "duplicate")):
                    raise HarnessError(f"leaderboard {self.url} already holds run {manifest['run_id']!r}: "
                                       f"{_short(exc)}") from None
                raise HarnessError(f"run {manifest['run_id']} finished (its files are written) but could not be "
                                   f"added to the leaderboard {self.url}: {_short(exc)}") from None
            except SQLAlchemyError as exc:
                raise HarnessError(f"run {manifest['run_id']} finished (its files are written) but could not be "
                                   f"added to the leaderboard {self.url}: {_short(exc)}") from None
            return
        cfg = manifest["config"]
        conn.execute(
            insert(runs_table).values(
                scorer_version=manifest_version(manifest, "scorer_version"),
                task_version=manifest_version(manifest, "task_version"), origin=origin, submitter=submitter,
                run_id=manifest["run_id"], task=cfg["task"],
                protocol=protocol_label(cfg["protocol"], manifest.get("protocol_options")), solver=cfg["solver"],
                model=cfg.get("model"), config_hash=manifest["config_hash"],
                data_fingerprint=manifest["data_fingerprint"], headline=headline,
                n_samples=manifest["n_samples"], n_errors=manifest["n_errors"], seed=manifest.get("seed"),
                git_commit=manifest.get("git_commit"), started=manifest.get("started"),
                finished=manifest.get("finished"), config=json.dumps(cfg, sort_keys=True),
            )
        )
        rows = [
            {"run_id": manifest["run_id"], "name": m.name, "value": _finite(m.value), "ci_low": _finite(m.ci_low),
             "ci_high": _finite(m.ci_high), "scale": m.scale, "higher_is_better": int(m.higher_is_better)}
            for m in metrics.values()
        ]
        if rows:
            conn.execute(insert(metrics_table), rows)

    def measured(self, task: str | None = None, run_id: str | None = None) -> list[BoardRow]:
        q = select(runs_table).order_by(runs_table.c.task, runs_table.c.finished)
        mq = select(metrics_table)
        if task:
            q = q.where(runs_table.c.task == task)
            mq = mq.where(metrics_table.c.run_id.in_(select(runs_table.c.run_id).where(runs_table.c.task == task)))
        if run_id:
            q, mq = q.where(runs_table.c.run_id == run_id), mq.where(metrics_table.c.run_id == run_id)
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as conn:
                runs = conn.execute(q).mappings().all()
                mrows = conn.execute(mq).mappings().all()
        except SQLAlchemyError as exc:
            raise HarnessError(f"cannot read leaderboard {self.url}: {_short(exc)}") from None
        by_run: dict[str, dict[str, dict[str, float | None]]] = {}
        for m in mrows:
            s = m["scale"]
            by_run.setdefault(m["run_id"], {})[m["name"]] = {
                **{k: (None if m[k] is None else m[k] * s) for k in ("value", "ci_low", "ci_high")},
                "higher_is_better": bool(m["higher_is_better"]),
            }
        out = []
        for r in runs:
            cfg = json.loads(r["config"])
            opts = cfg.get("solver_options") or {}
            method = r["solver"] + (f" ({', '.join(f'{k}={v}' for k, v in opts.items())})" if opts else "")
            if r["model"]:
                method += f" · {r['model']}"
            out.append(BoardRow("measured", r["task"], r["protocol"], method, by_run.get(r["run_id"], {}),
                                source=r["run_id"], n_samples=r["n_samples"], n_errors=r["n_errors"],
                                extra={"config_hash": r["config_hash"], "finished": r["finished"],
                                       "headline": r["headline"], "scorer_version": r["scorer_version"],
                                       "origin": r["origin"] or "local", "submitter": r["submitter"],
                                       "data_fingerprint": r["data_fingerprint"], "solver": r["solver"]}))
        return out


def manifest_version(manifest: Mapping[str, Any], key: str) -> str | None:
    """A version the manifest records, at top level or under "task" (core v2 manifests)."""
    value = manifest.get(key)
    if value is None and isinstance(manifest.get("task"), dict):
        value = manifest["task"].get(key.removeprefix("task_"))
    return None if value is None else str(value)


def _add_missing_columns(engine: Any) -> None:
    """Additive migration: columns this version declares that an older database lacks (nullable)."""
    existing = {c["name"] for c in inspect(engine).get_columns(runs_table.name)}
    missing = [c for c in runs_table.columns if c.name not in existing]
    if missing:
        with engine.begin() as conn:
            for c in missing:
                conn.execute(text(f'ALTER TABLE {runs_table.name} ADD COLUMN "{c.name}" '
                                  f"{c.type.compile(dialect=engine.dialect)}"))


def _short(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's SQL echo and background link."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _finite(x: float) -> float | None:
    return None if x != x else float(x)  # NaN -> NULL (PostgreSQL and SQLite agree on NULL)


REFERENCE_TYPES = ("paper_reported", "harness_reproduced", "author_verified")


def _reference_type(path: Path, i: int, ref: dict[str, Any]) -> str:
    """`type` of a reference row: what the paper printed, what this harness reproduced, or what the
    authors confirmed; rows that do not say are what a paper reported."""
    kind = ref.get("type", "paper_reported")
    if kind not in REFERENCE_TYPES:
        raise DataError(f"{path}: reference #{i + 1} has type {kind!r}; use one of {', '.join(REFERENCE_TYPES)}")
    return kind


def reference_rows(task: str | None = None, folder: Path | None = None) -> list[BoardRow]:
    """Rows from leaderboards/references/<task>.toml (paper, arXiv id, table, protocol, metrics)."""
    if folder is None:
        files = [
            Path(str(f)) for f in resources.files("leaderboards").joinpath("references").iterdir()
            if f.name.endswith(".toml")
        ]
    else:
        files = sorted(folder.glob("*.toml"))
    rows = []
    for path in sorted(files):
        name = path.stem
        if task and name != task:
            continue
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise DataError(f"{path}: malformed reference file: {exc}") from exc
        for i, ref in enumerate(data.get("reference", [])):
            missing = [k for k in ("paper", "protocol", "method", "metrics") if k not in ref]
            if missing:
                raise DataError(f"{path}: reference #{i + 1} lacks {', '.join(missing)}")
            source = ref["paper"] + (f", arXiv:{ref['arxiv']}" if ref.get("arxiv") else "")
            source += f", {ref['table']}" if ref.get("table") else ""
            rows.append(BoardRow(
                "reference", name, ref["protocol"], ref["method"],
                {k: {"value": float(v), "ci_low": None, "ci_high": None} for k, v in ref["metrics"].items()},
                source=source, verified=bool(ref.get("verified", False)), note=ref.get("note", ""),
                extra={"type": _reference_type(path, i, ref), "arxiv": ref.get("arxiv"), "table": ref.get("table"),
                       "cell": ref.get("cell"), "paper": ref["paper"]},
            ))
    return rows
