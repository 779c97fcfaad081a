"""Server side of `harness submit`: check a submission against the board's own copy of the task and
its data, then recompute every number from the submitted predictions alone.

Trust nothing the client sends except its predictions: targets and groups come from the server's
`task.folds()`, the submitted metrics.json is never read, and the scoring path is the one `harness
score` uses (`harness.scoring.rescore`). A refusal is a `Refused` with a reason meant for the
submitter; it never echoes more than a short, sanitised piece of the offending value.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from harness.board.plots import run_plots
from harness.core import HarnessError, Metric, Record, Sample, Task
from harness.leaderboard import manifest_version
from harness.registry import get_task, task_names
from harness.stats import MetricValue

# Names that reach file paths, HTML or SQL: letters, digits and . _ - (no leading dot, no "..").
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+/:@-]{0,255}$")  # "Qwen/Qwen2.5-VL-7B-Instruct"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ARTIFACT_REF_RE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{62}\.[a-z0-9]{1,8}$")  # harness.artifacts' references
CONFIG_KEYS = ("task", "protocol", "solver", "solver_options", "model", "judges", "roles", "limit", "seed", "n_boot")
MAX_RECORDS = 1_000_000


class Refused(HarnessError):
    """A submission the board does not accept; `reason` is shown to the submitter and audited."""

    def __init__(self, reason: str, status: int = 422) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def valid_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value) or ".." in value:
        shown = value[:40] if isinstance(value, str) else type(value).__name__
        raise Refused(f"{what} {shown!r} is not a valid name (letters, digits, '.', '_', '+', '-'; at most 200)")
    return value


@dataclass
class ServerTask:
    """The board's own ground truth for one (task, protocol): every sample it expects, by key."""

    task: Task
    protocol: str
    fingerprint: str
    samples: dict[tuple[str, str, str], Sample]  # (split, fold, sample_id) -> Sample
    order: list[tuple[str, str, str]]  # data order, as the runner writes samples.jsonl
    options: dict[str, Any] = field(default_factory=dict)  # canonical protocol options (-P), defaults


def load_server_task(name: str, protocol: str, data_root: Path | None) -> ServerTask:
    """Folds and fingerprint from the server's data: `data_root/<task.data_folder>` or, without a
    root, whatever the task resolves by itself (sarcasm's shipped annotations)."""
    task = get_task(name)
    path = data_root / task.data_folder if data_root is not None and task.data_folder else data_root
    data_dir = task.resolve_data(path)
    samples: dict[tuple[str, str, str], Sample] = {}
    order = []
    folds, options = task.load_folds(data_dir, protocol)
    for fold in folds:
        solved = fold.solved() if hasattr(fold, "solved") else [("test", fold.test)]
        for split, items in solved:
            for s in items:
                key = (split, fold.name, s.id)
                if key not in samples:
                    order.append(key)
                samples[key] = s
    return ServerTask(task, protocol, task.fingerprint(data_dir), samples, order, options)


@dataclass
class Submission:
    manifest: dict[str, Any]
    lines: list[dict[str, Any]]
    artifacts: dict[str, str]
    digest: str
    files: dict[str, bytes] = field(default_factory=dict)  # artifact ref -> bytes (checked against the ref)


def parse_submission(body: bytes) -> Submission:
    """The JSON body `harness submit` sends: {"manifest", "samples" (JSONL text), "artifacts"}."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(f"body is not JSON: {exc}", 400) from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("manifest"), dict):
        raise Refused("body must be an object with a 'manifest' object", 400)
    samples = payload.get("samples")
    if not isinstance(samples, str):
        raise Refused("'samples' must be the text of samples.jsonl", 400)
    artifacts = payload.get("artifacts") or {}
    if not isinstance(artifacts, dict) or not all(
            isinstance(k, str) and len(k) <= 300 and isinstance(v, str) and SHA256_RE.match(v)
            for k, v in artifacts.items()):
        raise Refused("'artifacts' must map artifact names to sha256 hex digests", 400)
    files = _artifact_files(payload.get("artifact_files") or {})
    lines = []
    for i, line in enumerate(samples.splitlines()):
        if not line.strip():
            continue
        if len(lines) >= MAX_RECORDS:
            raise Refused(f"more than {MAX_RECORDS} records", 413)
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise Refused(f"samples.jsonl line {i + 1} is not JSON: {exc}", 400) from exc
        if not isinstance(rec, dict):
            raise Refused(f"samples.jsonl line {i + 1} is not an object", 400)
        lines.append(rec)
    h = hashlib.sha256()
    h.update(orjson.dumps(payload["manifest"], option=orjson.OPT_SORT_KEYS))
    h.update(samples.encode())
    h.update(orjson.dumps(artifacts, option=orjson.OPT_SORT_KEYS))
    for ref in sorted(files):
        h.update(ref.encode())
    return Submission(payload["manifest"], lines, artifacts, h.hexdigest(), files)


def _artifact_files(raw: Any) -> dict[str, bytes]:
    """Uploaded artifacts, {ref: base64}: each ref a content address (`ab/cdef….ext`) whose sha256 the
    bytes must match, so a file cannot be swapped under a digest the run recorded."""
    if not isinstance(raw, dict):
        raise Refused("'artifact_files' must map artifact references to base64 data", 400)
    out = {}
    for ref, data in raw.items():
        if not isinstance(ref, str) or not ARTIFACT_REF_RE.match(ref) or not isinstance(data, str):
            raise Refused(f"artifact {str(ref)[:80]!r} is not a content address (ab/cdef….ext)", 400)
        try:
            content = base64.b64decode(data, validate=True)
        except binascii.Error as exc:
            raise Refused(f"artifact {ref}: not base64", 400) from exc
        if hashlib.sha256(content).hexdigest() != ref[:2] + ref[3:].split(".")[0]:
            raise Refused(f"artifact {ref}: its bytes do not match its sha256 name")
        out[ref] = content
    return out


def check_manifest(manifest: dict[str, Any]) -> tuple[str, str, str]:
    """(run_id, task, protocol), validated as names; the task must be one the board knows."""
    run_id = valid_name(manifest.get("run_id"), "run id")
    cfg = manifest.get("config")
    if not isinstance(cfg, dict):
        raise Refused("manifest has no 'config' object")
    task = valid_name(cfg.get("task"), "task")
    protocol = valid_name(cfg.get("protocol"), "protocol")
    valid_name(cfg.get("solver"), "solver")
    for model in [cfg.get("model"), *(cfg.get("judges") or [])]:
        if model is not None and (not isinstance(model, str) or not MODEL_RE.match(model) or ".." in model):
            raise Refused(f"model name {str(model)[:60]!r} is not valid")
    options = cfg.get("solver_options") or {}
    if not isinstance(options, dict):
        raise Refused("solver_options must be an object")
    for key, value in options.items():
        valid_name(key, "solver option")
        if isinstance(value, (dict, list)) or (isinstance(value, str) and len(value) > 200):
            raise Refused(f"solver option {key!r}: only short scalar values are accepted")
    if task not in task_names():
        raise Refused(f"task {task!r} is not on this board")
    if manifest.get("status") not in (None, "finished"):
        raise Refused(f"run status is {str(manifest.get('status'))[:20]!r}; only finished runs can be submitted")
    return run_id, task, protocol


def check_against_server(manifest: dict[str, Any], server: ServerTask) -> None:
    task = server.task
    if server.protocol not in task.protocols:
        raise Refused(f"task {task.name!r} has no protocol {server.protocol!r}")
    want = str(getattr(task, "scorer_version", "1"))
    got = manifest_version(manifest, "scorer_version")
    if got is None:
        raise Refused(f"manifest records no scorer_version (this board scores {task.name} with scorer version {want})")
    if got != want:
        raise Refused(f"scorer version mismatch: the run used {got!r}, this board scores {task.name} with {want!r}")
    given = manifest.get("protocol_options") or {}
    used = task.changed_protocol_options(given)
    if used != server.options:
        # other options (pad_il's domain order, ...) are another protocol: scoring the run's predictions
        # against the board's folds would be a wrong number, not a comparable one
        shown = orjson.dumps(given if isinstance(given, dict) else str(given)).decode()[:200]
        raise Refused(f"protocol options mismatch: the run used {shown}, this board scores "
                      f"{task.name}/{server.protocol} with {orjson.dumps(server.options).decode()[:200]}")
    fp = manifest.get("data_fingerprint")
    if fp != server.fingerprint:
        raise Refused(f"data fingerprint mismatch: the run's data is {str(fp)[:40]!r}, the board's copy of "
                      f"{task.name} is {server.fingerprint!r} (a different or modified dataset: another file "
                      f"list, a media file of another size, or other annotation content)")


def server_records(lines: Sequence[dict[str, Any]], server: ServerTask) -> list[Record]:
    """Records with the server's targets and groups; every expected sample exactly once."""
    seen: dict[tuple[str, str, str], Record] = {}
    for i, d in enumerate(lines):
        sid, fold, split = d.get("sample_id"), d.get("fold"), d.get("split", "test")
        if not all(isinstance(x, str) and 0 < len(x) <= 300 for x in (sid, fold, split)):
            raise Refused(f"samples.jsonl line {i + 1}: sample_id, fold and split must be short strings")
        key = (split, fold, sid)
        sample = server.samples.get(key)
        if sample is None:
            raise Refused(f"samples.jsonl line {i + 1}: sample {sid[:60]!r} of fold {fold[:40]!r} ({split[:20]}) "
                          f"is not in {server.task.name}/{server.protocol}")
        if key in seen:
            raise Refused(f"samples.jsonl line {i + 1}: sample {sid[:60]!r} of fold {fold[:40]!r} appears twice")
        error = d.get("error")
        arts = d.get("artifacts") or {}
        seen[key] = Record(
            sid, fold, sample.target, d.get("prediction"), {}, dict(sample.groups), {},
            None if error is None else str(error)[:500], 0.0, False,
            **({"split": split, "artifacts": dict(arts) if isinstance(arts, dict) else {}}
               if "split" in Record.__dataclass_fields__ else {}),
        )
    missing = [k for k in server.order if k not in seen]
    if missing:
        s, f, sid = missing[0]
        raise Refused(f"the run covers {len(seen)} of {len(server.order)} samples of {server.task.name}/"
                      f"{server.protocol} (first missing: {sid!r} of fold {f!r}); only complete runs are ranked")
    return [seen[k] for k in server.order]


def headline_replicates(metric: Metric, task: Task, server: ServerTask, records: Sequence[Record], *,
                        n_boot: int, seed: int) -> np.ndarray | None:
    """The headline metric on `n_boot` resamples that depend only on the server's sample list and
    `seed`, never on the run: replicate k of every run on the board uses the same resample, so the
    matrix of all runs' replicates gives rank intervals (a joint bootstrap). The design (folds,
    clusters, strata) is harness.stats' own, built from the server's samples; a run's errored samples
    are in every draw but count for nothing, as they drop out of its point value."""
    from harness.stats import Design, _Evaluator, _replicates

    if getattr(metric, "resample", "samples") == "none" or n_boot <= 0:
        return None
    by_key = {(getattr(r, "split", "test"), r.fold, r.sample_id): r for r in records}
    template, mine = [], []
    for key in server.order:
        sample = server.samples[key]
        template.append(Record(sample.id, key[1], sample.target, None, {}, dict(sample.groups), split=key[0]))
        r = by_key[key]
        # an errored record joins no metric: a split name no metric asks for
        mine.append(r if r.ok else dataclasses.replace(r, split="(errored)"))
    design = Design(template, task.cluster_key, bool(getattr(task, "bootstrap_within_folds", True)))
    (reps,) = _replicates([_Evaluator(metric, design, mine)], design, n_boot, seed, every=True)
    return reps


@dataclass
class Scored:
    run_id: str
    manifest: dict[str, Any]
    metrics: dict[str, MetricValue]
    report: dict[str, Any]
    records: list[Record]
    replicates: np.ndarray | None
    headline: str
    plots: dict[str, bytes] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def recompute(sub: Submission, server: ServerTask, *, n_boot: int, seed: int, roles: Sequence[str] = ()) -> Scored:
    """Score the submission as `harness score` would, with the server's targets, the uploaded
    artifacts and the board's own scoring models (`roles`: --role NAME=MODEL[@URL], else the task's
    defaults)."""
    from harness.artifacts import ArtifactStore
    from harness.core import ScoreContext
    from harness.roles import build_roles
    from harness.scoring import rescore

    run_id, _, _ = check_manifest(sub.manifest)
    check_against_server(sub.manifest, server)
    records = server_records(sub.lines, server)
    task = server.task
    with tempfile.TemporaryDirectory(prefix="harness-board-") as tmp:
        store = ArtifactStore(Path(tmp) / "artifacts")
        for ref, content in sub.files.items():
            (store.root / ref).parent.mkdir(parents=True, exist_ok=True)
            (store.root / ref).write_bytes(content)
        sctx = ScoreContext(roles=build_roles(roles, (), task.roles), artifacts=store, seed=seed)
        out = Path(tmp) / "report"
        out.mkdir()
        metrics, report = rescore(task, server.protocol, records, n_boot=n_boot, seed=seed, out_dir=out, sctx=sctx)
        # the report names files in the temporary folder: keep their names only
        report = orjson.loads(orjson.dumps(report, default=str).decode().replace(str(out) + "/", ""))
        plots = run_plots(report, records, out)
    defs = task.metrics(server.protocol)
    headline = defs[0].name if defs else ""
    reps = headline_replicates(defs[0], task, server, records, n_boot=n_boot, seed=seed) if defs else None
    cfg = {k: sub.manifest["config"].get(k) for k in CONFIG_KEYS}
    cfg["solver_options"] = dict(cfg["solver_options"] or {})
    cfg["n_boot"], cfg["seed_bootstrap"] = n_boot, seed
    n_errors = sum(not r.ok for r in records)
    manifest = {
        "run_id": run_id, "config": cfg, "config_hash": str(sub.manifest.get("config_hash", ""))[:32],
        "data_fingerprint": server.fingerprint, "n_samples": len(records), "n_errors": n_errors,
        "seed": cfg.get("seed") if isinstance(cfg.get("seed"), int) else None,
        "git_commit": str(sub.manifest.get("git_commit") or "")[:64] or None,
        "started": str(sub.manifest.get("started") or "")[:40] or None,
        "finished": str(sub.manifest.get("finished") or "")[:40] or None,
        "scorer_version": str(getattr(task, "scorer_version", "1")),
        "task_version": str(getattr(task, "version", "1")),
        "solver_config": sub.manifest.get("solver_config"), "packages": sub.manifest.get("packages"),
        "submitted_manifest_digest": hashlib.sha256(orjson.dumps(sub.manifest, option=orjson.OPT_SORT_KEYS))
        .hexdigest(),
    }
    return Scored(run_id, manifest, metrics, report, records, reps, headline, plots)
