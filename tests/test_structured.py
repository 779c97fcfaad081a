"""Tolerant parsing of model answers: JSON wherever it is, labels only when unambiguous."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel

from harness.structured import (
    Invalid,
    Parsed,
    extract_json,
    invalid_rate,
    json_schema,
    match_label,
    parse_label,
    parse_model,
)

LABELS = ["sarcastic", "non-sarcastic"]


class Heads(BaseModel):
    behavior: Literal["on-task", "off-task"]
    confidence: float


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ('Here you go: ```\n{"a": 2}\n``` done', {"a": 2}),
        ('I think {"a": 3, "b": "}"} is right.', {"a": 3, "b": "}"}),
        ("The answer is {not json} but [1, 2] is", [1, 2]),
        ("no json here", None),
        ("", None),
    ],
)
def test_extract_json_finds_the_object_in_fences_or_prose(text, expected):
    assert extract_json(text) == expected


def test_parse_model_validates_and_reports_why_not():
    ok = parse_model('Answer: {"behavior": "on-task", "confidence": 0.8}', Heads)
    assert isinstance(ok, Parsed) and ok.value == Heads(behavior="on-task", confidence=0.8)
    wrong = parse_model('{"behavior": "dancing", "confidence": 0.8}', Heads)
    assert isinstance(wrong, Invalid) and wrong.reason.startswith("JSON does not match Heads: behavior")
    none = parse_model("on-task, fairly sure", Heads)
    assert isinstance(none, Invalid) and none.reason == "no JSON object in the answer"
    assert json_schema(Heads)["properties"]["behavior"]["enum"] == ["on-task", "off-task"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Sarcastic.", "sarcastic"),
        ("  NON-SARCASTIC ", "non-sarcastic"),
        ("non sarcastic", "non-sarcastic"),
        ("The utterance is sarcastic, given the tone.", "sarcastic"),
        ("I would say it is non-sarcastic.", "non-sarcastic"),  # 'sarcastic' inside the longer label
        ("non_sarcastic", "non-sarcastic"),
    ],
)
def test_label_matching_is_case_and_punctuation_insensitive(text, expected):
    assert match_label(text, LABELS) == Parsed(expected, "label")


@pytest.mark.parametrize(
    "text, reason",
    [
        ("It could be sarcastic or non-sarcastic.", "ambiguous answer: names non-sarcastic, sarcastic"),
        ("It is not sarcastic.", "negated label (sarcastic) in the answer"),
        ("I cannot tell.", "no label of"),
        ("sarcasticness", "no label of"),  # whole words only
    ],
)
def test_unclear_answers_are_invalid_never_a_class(text, reason):
    result = match_label(text, LABELS)
    assert isinstance(result, Invalid) and result.reason.startswith(reason) and result.raw == text


@pytest.mark.parametrize(
    "text",
    [
        "Not really sarcastic.",  # was read as "sarcastic"
        "I don't think it is sarcastic.",
        "I dont think it's sarcastic",
        "I am not sure whether it is sarcastic.",
        "It never sounds sarcastic to me",
        "Hard to say if it is sarcastic or not.",
    ],
)
def test_a_negation_earlier_in_the_clause_or_a_trailing_or_not_makes_the_answer_invalid(text):
    result = match_label(text, LABELS)
    assert isinstance(result, Invalid) and result.reason == "negated label (sarcastic) in the answer"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The speaker does not mean it literally, so it is sarcastic.", "sarcastic"),  # another clause
        ("It is sarcastic because he does not mean it.", "sarcastic"),
        ("He isn't serious; sarcastic.", "sarcastic"),
        ("There is no doubt it is sarcastic.", "sarcastic"),  # "no" negates only the word right after it
    ],
)
def test_a_negation_in_another_clause_leaves_the_label(text, expected):
    assert match_label(text, LABELS) == Parsed(expected, "label")


def test_parse_label_prefers_the_json_field_and_counts_invalid_answers():
    assert parse_label('{"label": "Sarcastic"}', LABELS) == Parsed("sarcastic", "json")
    assert parse_label("definitely sarcastic", LABELS) == Parsed("sarcastic", "label")
    bad = parse_label('{"label": "maybe"}', LABELS)
    assert isinstance(bad, Invalid) and bad.reason.startswith("JSON field 'label': no label")
    results = [parse_label(t, LABELS) for t in ["sarcastic", "?", "non-sarcastic", "both sarcastic and non-sarcastic"]]
    assert invalid_rate(results) == 0.5
