"""The sequential report (accuracy matrix, backward transfer, seen-domain average) on a hand-worked
example."""

from __future__ import annotations

import math

import pytest

from harness.core import Record
from harness.sequential import accuracy_matrix, backward_transfer, seen_average


def _acc(records):
    return sum(r.prediction == r.target for r in records) / len(records)


def _rec(step, domain, right, i):
    return Record(f"{domain}{i}", step, 1, 1 if right else 0, groups={"domain": domain})


def test_accuracy_matrix_and_bwt_worked_by_hand():
    """Three steps introduce domains A, B, C. Four samples per domain; right answers:
        after step 1: A 4/4
        after step 2: A 2/4, B 3/4
        after step 3: A 1/4, B 3/4, C 4/4
    R = [[1, -, -], [.5, .75, -], [.25, .75, 1]]; BWT = ((.25 - 1) + (.75 - .75)) / 2 = -0.375;
    seen averages 1, .625, 2/3."""
    right = {("s1", "A"): 4, ("s2", "A"): 2, ("s2", "B"): 3, ("s3", "A"): 1, ("s3", "B"): 3, ("s3", "C"): 4}
    records = [_rec(s, d, i < k, i) for (s, d), k in right.items() for i in range(4)]
    records.append(Record("broken", "s3", 1, None, groups={"domain": "C"}, error="timeout"))  # left out
    matrix, steps, domains = accuracy_matrix(records, _acc)
    assert steps == ["s1", "s2", "s3"] and domains == ["A", "B", "C"]
    assert matrix == [[1.0, None, None], [0.5, 0.75, None], [0.25, 0.75, 1.0]]
    assert backward_transfer(matrix) == pytest.approx(-0.375)
    assert seen_average(matrix) == pytest.approx([1.0, 0.625, 2 / 3])


def test_bwt_counts_each_domain_from_the_step_that_introduced_it():
    # step 1 introduces A and B together; step 2 introduces nothing new
    matrix = [[0.8, 0.6], [0.7, 0.9]]
    assert backward_transfer(matrix) == pytest.approx(((0.7 - 0.8) + (0.9 - 0.6)) / 2)
    assert math.isnan(backward_transfer([[1.0]]))


def test_domain_key_and_record_order():
    records = [Record("x", "late", 1, 1, groups={"site": "b"}), Record("y", "early", 1, 0, groups={"site": "a"})]
    matrix, steps, domains = accuracy_matrix(records, _acc, domain_key="site")
    assert steps == ["late", "early"] and domains == ["b", "a"] and matrix == [[1.0, None], [None, 0.0]]
