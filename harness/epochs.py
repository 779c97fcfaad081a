"""Epochs: solve each sample K times with different seeds and report the metrics' mean and spread.

Why: at temperature > 0 (or with a server whose batching changes logits) one run of an MLLM solver is one
draw; a difference between two solvers smaller than the spread over draws means nothing. With `-S epochs=K`
a model solver runs each sample K times, epoch e with seed `seed + e` (e = 0 is the ordinary run). The
sample's prediction stays epoch 0's, so `epochs=1` and the headline numbers mean what they always did;
every epoch's prediction is kept in the sample's info (`info["epochs"]`), and the run's report gets, per
metric, the value on each epoch's predictions, their mean, standard deviation (ddof=1), min and max
(`epochs_report`, scored with the task's own `score` and metrics, so it needs no extra model call).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from harness.core import Record, SolverOutput, Task


async def solve_epochs(solve_one: Callable[[int | None], Awaitable[Any]], epochs: int, seed: int | None,
                       ) -> Any:
    """Run `solve_one(seed + e)` for e < `epochs` (concurrently) and return epoch 0's output with every
    epoch's prediction in `info["epochs"]` ([{"seed", "prediction", "invalid"}])."""
    if epochs <= 1:
        return await solve_one(seed)
    base = 0 if seed is None else seed
    seeds = [base + e for e in range(epochs)]
    outputs = await asyncio.gather(*(solve_one(s) for s in seeds))
    first = outputs[0]
    if not isinstance(first, SolverOutput):
        first = SolverOutput(first)
    runs = []
    for s, out in zip(seeds, outputs, strict=True):
        pred, info = (out.prediction, out.info) if isinstance(out, SolverOutput) else (out, {})
        runs.append({"seed": s, "prediction": pred, "invalid": bool(info.get("invalid"))})
    return replace(first, info={**first.info, "epochs": runs})


def epochs_report(task: Task, protocol: str, records: Sequence[Record], *, seed: int = 0) -> dict[str, Any]:
    """Per metric: its value on each epoch's predictions (successful records holding `info["epochs"]`),
    with mean, std (ddof=1), min and max over epochs. {} when no record has epochs."""
    from harness.scoring import sample_of
    from harness.stats import bootstrap

    with_epochs = [r for r in records if r.ok and isinstance(r.info.get("epochs"), list)]
    if not with_epochs:
        return {}
    k = min(len(r.info["epochs"]) for r in with_epochs)
    if task.scores_with_models():
        return {"epochs": k, "note": "not computed: this task scores with models (judges), and re-scoring every "
                "epoch would call them again"}
    metric_defs = task.metrics(protocol)
    per_epoch: dict[str, list[float]] = {m.name: [] for m in metric_defs}
    for e in range(k):
        epoch_records = []
        for r in with_epochs:
            prediction = r.info["epochs"][e]["prediction"]
            epoch_records.append(replace(r, prediction=prediction, scores=task.score(sample_of(r), prediction)))
        pooled = {} if getattr(task, "bootstrap_within_folds", True) else {"within_folds": False}
        values = bootstrap(metric_defs, epoch_records, cluster_key=task.cluster_key, n_boot=1, seed=seed, **pooled)
        for name, value in values.items():
            per_epoch.setdefault(name, []).append(float(value.value))
    out: dict[str, Any] = {}
    for name, values in per_epoch.items():
        finite = [v for v in values if not math.isnan(v)]
        mean = sum(finite) / len(finite) if finite else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else math.nan
        out[name] = {"per_epoch": values, "mean": mean, "std": std, "min": min(finite, default=math.nan),
                     "max": max(finite, default=math.nan)}
    return {"epochs": k, "samples": len(with_epochs), "metrics": out}
