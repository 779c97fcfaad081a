"""Judges: versioned rubrics, structured verdicts, majority vote, kappas, cached verdicts."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Literal

import pytest
from pydantic import BaseModel
from servers.fake_openai import FakeOpenAIServer, ServerConfig
from sklearn.metrics import cohen_kappa_score

from harness.judges import Rubric, agreement, cohen_kappa, fleiss_kappa, majority, panel_from_models


class EditVerdict(BaseModel):
    verdict: Literal["success", "failure"]
    reason: str


RUBRIC = Rubric(
    name="edit-success",
    version="1",
    template="Instruction: {instruction}\nDid the edit follow the instruction? Answer success or failure.",
    output_schema=EditVerdict,
)


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_equals_sklearn(seed):
    import random

    rng = random.Random(seed)
    a = [rng.choice("abc") for _ in range(40)]
    b = [x if rng.random() < 0.6 else rng.choice("abc") for x in a]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


WIKIPEDIA_TABLE = [  # 10 subjects, 14 raters, 5 categories (Fleiss' kappa article, worked example)
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]  # fmt: skip


def test_fleiss_kappa_equals_the_hand_worked_wikipedia_example():
    n, N = 14, len(WIKIPEDIA_TABLE)
    # by hand, exactly: P_i = (sum n_ij^2 - n) / (n (n - 1)); p_j = column total / (N n)
    P = [Fraction(sum(c * c for c in row) - n, n * (n - 1)) for row in WIKIPEDIA_TABLE]
    p = [Fraction(sum(row[j] for row in WIKIPEDIA_TABLE), N * n) for j in range(5)]
    P_bar, P_e = sum(P) / N, sum(x * x for x in p)
    by_hand = (P_bar - P_e) / (1 - P_e)
    assert float(P_bar) == pytest.approx(0.378, abs=5e-4) and float(P_e) == pytest.approx(0.213, abs=5e-4)
    assert fleiss_kappa(WIKIPEDIA_TABLE) == pytest.approx(float(by_hand), abs=1e-12)
    assert fleiss_kappa(WIKIPEDIA_TABLE) == pytest.approx(0.210, abs=5e-4)
    try:
        from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss
    except ImportError:
        return
    assert fleiss_kappa(WIKIPEDIA_TABLE) == pytest.approx(sm_fleiss(WIKIPEDIA_TABLE), abs=1e-12)


def test_agreement_picks_cohen_for_two_and_fleiss_for_more_and_skips_invalid_items():
    two = agreement([["x", "x"], ["y", "x"], ["y", "y"], [None, "x"]])
    assert two["items"] == 3 and two["items_left_out"] == 1
    assert two["cohen_kappa"] == pytest.approx(cohen_kappa_score(["x", "y", "y"], ["x", "x", "y"]))
    three = agreement([["a", "a", "b"], ["b", "b", "b"], ["a", "b", "a"]])
    assert three["fleiss_kappa"] == pytest.approx(fleiss_kappa([[2, 1], [0, 3], [2, 1]]))


def test_majority_vote_ignores_invalid_verdicts_and_reports_ties():
    assert majority(["a", "b", "a", None])[0] == "a"
    value, votes, tie = majority(["a", "b", None])
    assert value is None and tie and votes == {"a": 1, "b": 1}
    assert majority([None, None]) == (None, {}, False)


def test_rubric_hash_changes_with_text_and_version():
    assert RUBRIC.hash == Rubric(**{**RUBRIC.__dict__}).hash
    assert RUBRIC.hash != Rubric(**{**RUBRIC.__dict__, "version": "2"}).hash
    assert RUBRIC.hash != Rubric(**{**RUBRIC.__dict__, "template": RUBRIC.template + "!"}).hash
    assert RUBRIC.labels == ["success", "failure"]


def test_panel_votes_with_structured_verdicts_and_caches_them_by_rubric(tmp_path):
    items = [{"instruction": "add a cat"}, {"instruction": "remove the dog"}, {"instruction": "make a cat blue"}]
    with FakeOpenAIServer(ServerConfig(answer="servers.answers:verdict_by_model")) as srv:
        kwargs = dict(base_url=srv.base_url, api_key=None, cache_dir=tmp_path, use_cache=True,
                      concurrency=4, timeout_s=10)  # fmt: skip

        def run(rubric: Rubric):
            panel = panel_from_models(["judge-a", "judge-b", "judge-c"], kwargs, rubric)

            async def go():
                try:
                    return await asyncio.gather(*(panel.judge(**item) for item in items))
                finally:
                    await panel.aclose()

            return panel, asyncio.run(go())

        panel, results = run(RUBRIC)
        seen_first = srv.stats()["seen"]
        _, again = run(RUBRIC)
        seen_cached = srv.stats()["seen"]
        run(Rubric(**{**RUBRIC.__dict__, "version": "2"}))
        seen_new_version = srv.stats()["seen"]
        body = srv.bodies()[0]

    assert [r.value for r in results] == ["success", None, "success"]  # the middle one is a 1:1 tie
    assert results[1].tie
    a, b, c = results[0].verdicts
    assert (a.value, b.value, c.value) == ("success", "success", None)
    assert c.error == "no JSON object in the answer"
    assert a.fields == {"verdict": "success", "reason": "looks edited"}
    assert body["temperature"] == 0.0 and body["response_format"]["json_schema"]["name"] == "EditVerdict"
    assert RUBRIC.hash in body["messages"][0]["content"]
    assert seen_first == 9 and seen_cached == 9 and seen_new_version == 18
    assert all(v.cached for r in again for v in r.verdicts if v.ok)
    assert panel.agreement(results) == {"items": 0, "items_left_out": 3}  # judge-c never valid


def test_the_same_judge_twice_is_refused_not_a_perfect_agreement():
    """`--judge M@U --judge M@U` would answer the second judge from the first one's cache: kappa 1 by construction."""
    from harness.core import HarnessError
    from harness.roles import RoleSpec

    kwargs = dict(base_url="http://127.0.0.1:9/v1", api_key=None, cache_dir=None, use_cache=False, concurrency=1,
                  timeout_s=1)  # fmt: skip
    with pytest.raises(HarnessError, match="given twice"):
        panel_from_models([RoleSpec("judge", "judge-a", "http://h:1/v1"), RoleSpec("judge2", "judge-a", "http://h:1/v1")],
                          kwargs, RUBRIC)
    with pytest.raises(HarnessError, match="given twice"):
        panel_from_models(["judge-a", "judge-a"], kwargs, RUBRIC)  # both on --base-url
    panel = panel_from_models([RoleSpec("judge", "judge-a", "http://h:1/v1"), RoleSpec("judge2", "judge-a",
                                                                                     "http://h:2/v1")], kwargs, RUBRIC)
    assert len(panel.judges) == 2  # the same model on two servers is two judges
