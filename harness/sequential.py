"""The report of a sequential (domain-incremental) protocol: an accuracy matrix and backward transfer.

In a sequential protocol the folds are steps fitted in order on one solver state; step t's test set
holds the test samples of every domain seen up to t (`groups["domain"]`), and its records carry
`fold` = step name. A single number hides forgetting, so the report is the matrix R[t][d] (the
metric on domain d after step t; None where d is not seen yet) with, per step, the mean over the seen
domains, and backward transfer (Lopez-Paz & Ranzato, GEM, 2017):

    BWT = mean over domains d first seen before the last step of R[T-1][d] - R[s(d)][d]

where s(d) is the step that introduced d; when step i introduces domain i this is the usual
mean over i < T-1 of R[T-1][i] - R[i][i]. Negative BWT is forgetting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from harness.core import Record

Matrix = list[list[float | None]]


def accuracy_matrix(records: Sequence[Record], metric_fn: Callable[[Sequence[Record]], float],
                    domain_key: str = "domain") -> tuple[Matrix, list[str], list[str]]:
    """(matrix, steps, domains): matrix[t][d] = `metric_fn` on the successful records of step t
    (`record.fold`) and domain d (`record.groups[domain_key]`), None where step t has no record of d.
    Steps and domains in order of first appearance."""
    cells: dict[tuple[str, str], list[Record]] = {}
    steps: dict[str, None] = {}
    domains: dict[str, None] = {}
    for r in records:
        if not r.ok:
            continue
        domain = str(r.groups[domain_key])
        steps.setdefault(r.fold)
        domains.setdefault(domain)
        cells.setdefault((r.fold, domain), []).append(r)
    matrix: Matrix = [
        [float(metric_fn(cells[(s, d)])) if (s, d) in cells else None for d in domains] for s in steps
    ]
    return matrix, list(steps), list(domains)


def _first_seen(matrix: Matrix) -> list[int | None]:
    """The step at which each domain first has a value."""
    n_domains = len(matrix[0]) if matrix else 0
    return [next((t for t, row in enumerate(matrix) if row[d] is not None), None) for d in range(n_domains)]


def backward_transfer(matrix: Matrix) -> float:
    """Mean over domains introduced before the last step of (final value - value when introduced); nan
    with fewer than two steps."""
    if len(matrix) < 2:
        return math.nan
    last = len(matrix) - 1
    diffs = [matrix[last][d] - matrix[s][d] for d, s in enumerate(_first_seen(matrix))
             if s is not None and s < last and matrix[last][d] is not None]
    return sum(diffs) / len(diffs) if diffs else math.nan


def seen_average(matrix: Matrix) -> list[float]:
    """Per step, the mean of the metric over the domains seen at that step (its row's values)."""
    out = []
    for row in matrix:
        seen = [v for v in row if v is not None]
        out.append(sum(seen) / len(seen) if seen else math.nan)
    return out
