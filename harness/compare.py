"""`harness compare`: paired bootstrap of two runs of one task and protocol on their shared samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core import HarnessError
from harness.registry import get_task
from harness.rundir import find_run, load_run
from harness.stats import Comparison, paired_bootstrap


@dataclass
class RunComparison:
    run_a: dict[str, Any]
    run_b: dict[str, Any]
    rows: list[Comparison]
    n_only_a: int
    n_only_b: int


def compare_runs(out_dir: Path, run_a: str, run_b: str, *, n_boot: int = 2000, seed: int = 0) -> RunComparison:
    man_a, rec_a, _ = load_run(find_run(out_dir, run_a))
    man_b, rec_b, _ = load_run(find_run(out_dir, run_b))
    ca, cb = man_a["config"], man_b["config"]
    if (ca["task"], ca["protocol"]) != (cb["task"], cb["protocol"]):
        raise HarnessError(
            f"runs differ in task/protocol ({ca['task']}/{ca['protocol']} vs {cb['task']}/{cb['protocol']}); "
            "a paired comparison needs the same samples"
        )
    opts_a, opts_b = man_a.get("protocol_options") or {}, man_b.get("protocol_options") or {}
    if opts_a != opts_b:  # other -P options: other folds (pad_il's domain order), even under the same names
        raise HarnessError(f"runs differ in protocol options ({opts_a or 'defaults'} vs {opts_b or 'defaults'}); "
                           "a paired comparison needs the same folds")
    if man_a.get("data_fingerprint") != man_b.get("data_fingerprint"):
        raise HarnessError("runs used different data (data fingerprints differ)")
    task = get_task(ca["task"])
    keys_a = {(r.fold, r.sample_id) for r in rec_a if r.ok}
    keys_b = {(r.fold, r.sample_id) for r in rec_b if r.ok}
    rows = [
        paired_bootstrap(m, rec_a, rec_b, cluster_key=task.cluster_key, n_boot=n_boot, seed=seed,
                         within_folds=task.bootstrap_within_folds)
        for m in task.metrics(ca["protocol"])
    ]
    return RunComparison(man_a, man_b, rows, len(keys_a - keys_b), len(keys_b - keys_a))
