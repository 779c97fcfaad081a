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
    man_a, rec_a, met_a = load_run(find_run(out_dir, run_a))
    man_b, rec_b, met_b = load_run(find_run(out_dir, run_b))
    ca, cb = man_a["config"], man_b["config"]
    if (ca["task"], ca["protocol"]) != (cb["task"], cb["protocol"]):
        raise HarnessError(
            f"runs differ in task/protocol ({ca['task']}/{ca['protocol']} vs {cb['task']}/{cb['protocol']}); "
            "a paired comparison needs the same samples"
        )
    task = get_task(ca["task"])
    opts_a, opts_b = (task.changed_protocol_options(m.get("protocol_options") or {}) for m in (man_a, man_b))
    if opts_a != opts_b:  # other -P options: other folds (pad_il's domain order), even under the same names
        raise HarnessError(f"runs differ in protocol options ({opts_a or 'defaults'} vs {opts_b or 'defaults'}); "
                           "a paired comparison needs the same folds")
    if man_a.get("data_fingerprint") != man_b.get("data_fingerprint"):
        raise HarnessError("runs used different data (data fingerprints differ)")
    versions = [str(m.get("scorer_version") or man.get("scorer_version") or "?")
                for man, m in ((man_a, met_a), (man_b, met_b))]
    if versions[0] != versions[1]:  # per-sample scores of two scorers: not one paired comparison
        raise HarnessError(f"runs were scored by different scorer versions ({versions[0]} vs {versions[1]}); "
                           f"re-score them with the current one first: `harness score {run_a}` and "
                           f"`harness score {run_b}`")
    from harness.scoring import samples_if_at_hand

    samples_if_at_hand(task, man_a, ca["protocol"], "comparing")  # what metrics need (motor's fixed vocabulary)
    keys_a = {(r.fold, r.sample_id) for r in rec_a if r.ok}
    keys_b = {(r.fold, r.sample_id) for r in rec_b if r.ok}
    rows = [
        paired_bootstrap(m, rec_a, rec_b, cluster_key=task.cluster_key, n_boot=n_boot, seed=seed,
                         within_folds=task.bootstrap_within_folds)
        for m in task.metrics(ca["protocol"])
    ]
    return RunComparison(man_a, man_b, rows, len(keys_a - keys_b), len(keys_b - keys_a))
