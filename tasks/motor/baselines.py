"""Weights-free reference baselines for `motor`.

`majority` predicts each head's most frequent label. MOTOR is zero-shot (no training split), so the
frequencies come from `prior_counts` in labels.json when the data holder supplies them, else from the
manifest's own labels, which is the test set: `majority` is then a reference floor that has seen the
test label distribution, not a fair solver. `random` draws uniformly from the vocabulary and
`stratified` in proportion to the same counts; both are seeded per sample (run seed + clip id), so a
result does not depend on the order or concurrency of the run.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.core import JSON, Sample, SeededSolver, Solver
from harness.registry import register_solver
from tasks.motor.data import HEADS


def _prior(sample: Sample, head: str) -> dict[str, int]:
    prior: Mapping[str, Mapping[str, int]] = sample.inputs.get("prior") or {}
    labels = sample.inputs["vocab"][head]
    return {label: int(prior.get(head, {}).get(label, 0)) for label in labels}


@register_solver("majority", tasks=("motor",), description="most frequent label per head (reference floor)")
class MajoritySolver(Solver):
    """Most frequent label per head; ties go to the earlier label of the vocabulary."""

    async def solve(self, sample: Sample) -> JSON:
        out = {}
        for head in HEADS:
            counts = _prior(sample, head)
            out[head] = max(counts, key=lambda lab, c=counts: (c[lab], -list(c).index(lab)))
        return out


@register_solver("random", tasks=("motor",), description="uniform random label per head (seeded)")
class RandomSolver(SeededSolver):
    async def solve(self, sample: Sample) -> JSON:
        rng = self.rng(sample)
        return {head: rng.choice(list(sample.inputs["vocab"][head])) for head in HEADS}


@register_solver("stratified", tasks=("motor",), description="random label per head drawn by label frequency (seeded)")
class StratifiedSolver(SeededSolver):
    async def solve(self, sample: Sample) -> JSON:
        rng = self.rng(sample)
        out = {}
        for head in HEADS:
            counts = _prior(sample, head)
            labels, weights = list(counts), list(counts.values())
            out[head] = rng.choices(labels, weights=weights)[0] if sum(weights) else rng.choice(labels)
        return out
