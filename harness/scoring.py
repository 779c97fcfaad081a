"""Scores and aggregates from predictions alone: the end of every run, `harness score RUN`, the board.

`aggregate` turns scored records into metric values with bootstrap CIs and the task's report (plus the
accuracy matrix of sequential protocols). `rescore` re-scores predictions with the current scorer, using
only what samples.jsonl holds (id, target, groups, prediction, artifacts), so a finished run can be
re-scored after a scorer fix, and a submitted run by a server with its own ground truth.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.core import HarnessError, Record, Sample, ScoreContext, Task
from harness.stats import MetricValue, bootstrap


def aggregate(task: Task, protocol: str, records: Sequence[Record], *, n_boot: int = 1000, seed: int = 0,
              out_dir: Path | None = None) -> tuple[dict[str, MetricValue], dict[str, Any]]:
    """Metric values with CIs over the records, and the task's report (errors in it never cost the metrics)."""
    from harness.rundir import to_jsonable

    metric_defs = task.metrics(protocol)
    pooled = {} if task.bootstrap_within_folds else {"within_folds": False}
    metrics = bootstrap(metric_defs, records, cluster_key=task.cluster_key, n_boot=n_boot, seed=seed, **pooled)
    report: dict[str, Any]
    try:
        report = to_jsonable(task.report(records, protocol, out_dir)) if out_dir is not None else {}
    except Exception as exc:
        report = {"error": f"report failed: {type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    if any("epochs" in r.info for r in records):  # `-S epochs=K`: the metrics' spread over K draws
        from harness.epochs import epochs_report

        try:
            report["epochs"] = to_jsonable(epochs_report(task, protocol, records, seed=seed))
        except Exception as exc:
            report["epochs"] = {"error": f"epochs report failed: {type(exc).__name__}: {exc}"}
    if task.sequential(protocol) and metric_defs:
        ok = [r for r in records if r.ok and r.split == "test"]
        report["sequential"] = to_jsonable(sequential_report(ok, metric_defs[0]))
    return metrics, report


def sequential_report(records: Sequence[Record], metric: Any) -> dict[str, Any]:
    """The accuracy matrix of a domain-incremental protocol (headline metric on every seen domain after
    each step) and its backward transfer."""
    from harness.sequential import accuracy_matrix, backward_transfer

    matrix, steps, domains = accuracy_matrix(records, metric.compute)
    return {"metric": metric.name, "steps": steps, "domains": domains, "matrix": matrix,
            "bwt": backward_transfer(matrix)}


def sample_of(record: Record) -> Sample:
    """The part of a sample that scoring may use, rebuilt from its record."""
    return Sample(record.sample_id, {}, record.target, record.groups)


def rescore(task: Task, protocol: str, records: Sequence[Record], *, n_boot: int = 1000, seed: int = 0,
            out_dir: Path | None = None, targets: Mapping[tuple[str, str], Any] | None = None,
            sctx: ScoreContext | None = None,
            samples: Mapping[tuple[str, str], Sample] | None = None) -> tuple[dict[str, MetricValue], dict[str, Any]]:
    """Re-score `records` in place from their predictions and aggregate. `targets` ((fold, sample id) ->
    target) replaces the records' own targets (a server scoring a submission with its ground truth);
    `samples` ((fold, sample id) -> Sample) gives scorers the full samples when the data is at hand."""
    sctx = sctx or ScoreContext()
    with_models = task.scores_with_models()

    async def score_all() -> None:
        for r in records:
            if targets is not None:
                key = (r.fold, r.sample_id)
                if key not in targets:
                    raise HarnessError(f"sample {r.sample_id!r} of fold {r.fold!r} is not in the task's data")
                r.target = targets[key]
            if r.error is not None and r.error.startswith("scoring failed:"):
                r.error = None  # a scorer failure is re-tried by the new scorer
            if not r.ok:
                r.scores = {}
                continue
            try:
                sample = (samples or {}).get((r.fold, r.sample_id)) or sample_of(r)
                if targets is not None:
                    sample = Sample(sample.id, sample.inputs, r.target, sample.groups)
                r.scores = (await task.ascore(sample, r.prediction, sctx)) if with_models \
                    else task.score(sample, r.prediction)
            except Exception as exc:
                r.scores, r.error = {}, f"scoring failed: {type(exc).__name__}: {exc}"

    asyncio.run(score_all())
    return aggregate(task, protocol, records, n_boot=n_boot, seed=seed, out_dir=out_dir)


def samples_if_at_hand(task: Task, manifest: Mapping[str, Any], protocol: str, purpose: str = "re-scoring",
                       ) -> dict[tuple[str, str], Sample]:
    """The run's samples from its data folder when it is still there (scorers then see the inputs, and
    tasks set up what `metrics` needs, such as a vocabulary); else {} and records alone are used."""
    import warnings

    data = manifest.get("data")
    if not data or not Path(data).exists():
        if data:  # said, not silent: a task may need its data for metrics (motor's label vocabulary)
            warnings.warn(f"{purpose} from samples.jsonl alone: the run's data {data} is not there any more "
                          "(metrics that need it, such as a fixed label set, may differ from the run's)", stacklevel=2)
        return {}
    try:
        folds, _ = task.load_folds(Path(data), protocol, manifest.get("protocol_options") or {})
    except Exception as exc:
        warnings.warn(f"{purpose} from samples.jsonl alone: {data} could not be loaded ({exc})", stacklevel=2)
        return {}
    return {(f.name, s.id): s for f in folds for _, ss in f.solved() for s in ss}


def score_run(run_dir: Path, out_dir: Path | None = None, *, n_boot: int | None = None) -> Path:
    """Re-score a finished run from its samples.jsonl and write metrics.json (and samples.jsonl with the
    new scores) into `out_dir` (default: the run folder itself). Returns the metrics.json path."""
    import json

    from harness.registry import get_task
    from harness.rundir import load_run, record_line, write_json, write_samples

    manifest, records, old = load_run(run_dir)
    if not records:
        raise HarnessError(f"{run_dir / 'samples.jsonl'}: no samples to score")
    cfg = manifest.get("config", {})
    task = get_task(cfg.get("task") or manifest.get("task", ""))
    if task.sealed:
        raise HarnessError(f"task {task.name!r} is sealed: its test targets are server-only; submit the run to a "
                           "board with `harness submit`")
    protocol = cfg.get("protocol", "")
    n_boot = n_boot if n_boot is not None else int(cfg.get("n_boot", 1000))
    seed = int(cfg.get("seed", 0))
    out = Path(out_dir) if out_dir is not None else run_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # --into names a file, or a folder that cannot be made
        raise HarnessError(f"--into {out}: cannot write the re-scored run there ({exc.strerror or exc})") from None
    from harness.artifacts import ArtifactStore
    from harness.roles import RoleSpec

    roles = {n: RoleSpec(n, v["model"], v.get("base_url")) for n, v in (manifest.get("roles") or {}).items()}
    sctx = ScoreContext(roles=roles, artifacts=ArtifactStore(run_dir.parent / "artifacts"), seed=seed)
    metrics, report = rescore(task, protocol, records, n_boot=n_boot, seed=seed, out_dir=out, sctx=sctx,
                              samples=samples_if_at_hand(task, manifest, protocol))
    metric_defs = task.metrics(protocol)
    write_samples(out / "samples.jsonl", [(record_line(r), r.cached) for r in records])
    write_json(out / "metrics.json", {
        # what the run itself counted (samples from the cache, model calls) stays; only the scores change
        **{k: v for k, v in old.items() if k in ("run_id", "task", "protocol", "solver", "model", "n_cached",
                                                 "model_calls")},
        "scorer_version": task.scorer_version, "rescored_from": str(run_dir),
        "headline": metric_defs[0].name if metric_defs else None,
        "metrics": {k: v.to_dict() for k, v in metrics.items()},
        "ci": old.get("ci"), "n_samples": len(records), "n_errors": sum(not r.ok for r in records),
        "errors": sorted({r.error for r in records if r.error})[:20], "report": report,
    })
    if out != run_dir and (run_dir / "manifest.json").exists():
        (out / "manifest.json").write_text(json.dumps({**manifest, "rescored_from": str(run_dir)}, indent=2))
    return out / "metrics.json"
