"""Presentation-attack-detection metrics on video scores (higher score = more likely bona fide / live).

Definitions (ISO/IEC 30107-3 and the OULU-NPU / cross-dataset literature):
- a video is accepted as live when its score >= the threshold t;
- FAR(t) = share of attack videos accepted, FRR(t) = share of live videos rejected;
- EER threshold: the candidate t (each distinct score, plus +inf) minimising |FAR - FRR|, ties broken by
  the smaller FAR + FRR, then the smaller t; HTER(t) = (FAR + FRR) / 2 (cross-dataset papers evaluate it at
  the EER threshold of the test scores themselves);
- APCER(t) = the largest acceptance rate over attack types (print, replay); BPCER(t) = FRR(t);
  ACER = (APCER + BPCER) / 2, with t fixed on the dev set (OULU-NPU protocols);
- AUC: probability that a random live video outscores a random attack (ties count one half).
Scores are floats, labels 1 = live, 0 = attack. Every function returns nan when a class is absent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _arrays(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if s.shape != y.shape:
        raise ValueError(f"{len(s)} scores for {len(y)} labels")
    return s, y


def far_frr(scores: Sequence[float], labels: Sequence[int], threshold: float) -> tuple[float, float]:
    s, y = _arrays(scores, labels)
    live, attack = s[y == 1], s[y == 0]
    far = float((attack >= threshold).mean()) if attack.size else math.nan
    frr = float((live < threshold).mean()) if live.size else math.nan
    return far, frr


def eer_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The threshold at the equal-error point (see the module docstring for candidates and ties)."""
    s, y = _arrays(scores, labels)
    live, attack = np.sort(s[y == 1]), np.sort(s[y == 0])
    if not live.size or not attack.size:
        return math.nan
    cand = np.append(np.unique(s), np.inf)
    far = 1.0 - np.searchsorted(attack, cand, side="left") / attack.size  # attack >= t
    frr = np.searchsorted(live, cand, side="left") / live.size  # live < t
    order = np.lexsort((cand, far + frr, np.abs(far - frr)))
    return float(cand[order[0]])


def hter(scores: Sequence[float], labels: Sequence[int], threshold: float | None = None) -> float:
    """HTER at `threshold` (default: the EER threshold of these scores)."""
    t = eer_threshold(scores, labels) if threshold is None else threshold
    if math.isnan(t):
        return math.nan
    far, frr = far_frr(scores, labels, t)
    return (far + frr) / 2


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve via the Mann-Whitney rank statistic (average ranks for ties)."""
    from scipy.stats import rankdata

    s, y = _arrays(scores, labels)
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    if not n1 or not n0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def apcer_bpcer_acer(scores: Sequence[float], labels: Sequence[int], attack_types: Sequence[str],
                     threshold: float) -> tuple[float, float, float]:
    """(APCER, BPCER, ACER) at a fixed threshold; APCER is the worst attack type's acceptance rate."""
    s, y = _arrays(scores, labels)
    types = np.asarray(attack_types, dtype=object)
    rates = [float((s[(y == 0) & (types == t)] >= threshold).mean()) for t in sorted(set(types[y == 0]))]
    apcer = max(rates) if rates else math.nan
    live = s[y == 1]
    bpcer = float((live < threshold).mean()) if live.size else math.nan
    return apcer, bpcer, (apcer + bpcer) / 2
