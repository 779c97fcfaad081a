"""Structured answers: ask for JSON, validate with pydantic, and parse free text tolerantly.

Every parse returns `Parsed` or `Invalid`. An answer that cannot be read is `Invalid` and counted as
such by the caller; it is never silently mapped to a class.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

Method = Literal["json", "label"]


@dataclass(frozen=True)
class Parsed:
    value: Any
    method: Method
    ok: Literal[True] = True


@dataclass(frozen=True)
class Invalid:
    reason: str
    raw: str
    ok: Literal[False] = False


ParseResult = Parsed | Invalid


def json_schema(spec: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    """The JSON schema to put in `ChatRequest.json_schema` for a pydantic model (or a schema as is)."""
    if isinstance(spec, dict):
        return spec
    return spec.model_json_schema()


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()


def extract_json(text: str) -> Any | None:
    """The first JSON object/array in `text`: the whole text, a ``` code fence, or embedded in prose."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for block in _FENCE.findall(text):
        try:
            return json.loads(block.strip())
        except ValueError:
            continue
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                value, _ = _DECODER.raw_decode(text, i)
            except ValueError:
                continue
            if isinstance(value, dict | list):
                return value
    return None


def parse_model(text: str, model: type[BaseModel], parsed: Any = None) -> ParseResult:
    """Validate an answer against a pydantic model; `parsed` is the backend's JSON when it has one."""
    value = parsed if parsed is not None else extract_json(text)
    if value is None:
        return Invalid("no JSON object in the answer", text)
    try:
        return Parsed(model.model_validate(value), "json")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        return Invalid(f"JSON does not match {model.__name__}: {where}: {first['msg']}", text)


_JSON_LIKE = re.compile(r'\{\s*["\'}]|\[\s*[{"\]]|```')


def looks_like_json(text: str) -> bool:
    """True when the answer is (or embeds) JSON, complete or not: it starts with `{`, or holds a code
    fence, `{"`, `{}` or `["`. Free-text label reading never runs over such text: a JSON answer that did
    not validate (cut at max_tokens, a null or unknown value) names its keys, and a key is not a label."""
    stripped = text.strip()
    return stripped.startswith("{") or bool(_JSON_LIKE.search(text))


def free_text_blocked(text: str, finish_reason: str | None = None) -> str | None:
    """Why an answer that did not validate must not be read as free text (None: it may be).

    A truncated answer (`finish_reason == "length"`) is never read: its end is missing. A JSON-looking
    answer is never read either (see `looks_like_json`). Either is an invalid prediction, never a class.
    """
    if finish_reason == "length":
        return "truncated: the answer reached max_tokens (finish_reason=length)"
    if looks_like_json(text):
        return "a JSON answer that does not validate is not read as free text"
    return None


_NON_WORD = re.compile(r"[^\w]+")
_NEGATIONS = {"not", "no", "non", "never", "isn", "isnt", "neither", "nor", "without"}
# Negations that reach a label anywhere earlier in its clause ("not really sarcastic", "I don't think it is
# sarcastic": "don't" is "don t" once normalised); "no" and "without" only right before it ("no doubt ...").
_SCOPE_NEGATIONS = {"not", "never", "t", "nt", "cannot", "isnt", "dont", "doesnt", "didnt", "cant", "wont", "arent",
                    "wasnt", "neither", "nor", "hardly"}
# A clause ends at these marks and before these words ("..., so it is sarcastic", "not X but Y").
_CLAUSE_MARKS = set(".!?;:,")
_CLAUSE_WORDS = {"but", "however", "so", "therefore", "thus", "hence", "although", "though", "because", "since",
                 "yet", "whereas"}
_TOKENS = re.compile(r"\w+|[.!?;:,]")


def _clause_ids(text: str) -> list[int]:
    """The clause number of each word of `normalize(text).split()`."""
    clause, ids = 0, []
    for token in _TOKENS.findall(text.replace("_", " ").lower()):
        if token in _CLAUSE_MARKS:
            clause += 1
            continue
        if token in _CLAUSE_WORDS:
            clause += 1
        ids.append(clause)
    return ids


def normalize(text: str) -> str:
    """Lower case, punctuation and underscores as spaces, single spaces."""
    return " ".join(_NON_WORD.sub(" ", text.replace("_", " ").lower()).split())


def match_label(text: str, labels: Iterable[str]) -> ParseResult:
    """The one label that `text` names, case- and punctuation-insensitively.

    The whole answer equal to a label wins; otherwise a label must occur as whole words, alone
    (a label inside a longer matching label does not count, e.g. `sarcastic` in `non-sarcastic`), and
    not negated: right after a negation ("not sarcastic" names no label unless a label says so), after
    "not", "never" or an "n't" earlier in its clause ("not really sarcastic", "I don't think it is
    sarcastic"), or followed by "or not". A negated label makes the answer invalid, never the other class.
    """
    labels = list(labels)
    norm_labels = {normalize(label): label for label in labels}
    answer = normalize(text)
    if answer in norm_labels:
        return Parsed(norm_labels[answer], "label")
    words = answer.split()
    spans: list[tuple[int, int, str]] = []
    for norm, label in norm_labels.items():
        n = len(norm.split())
        if n == 0:
            continue
        for i in range(len(words) - n + 1):
            if " ".join(words[i : i + n]) == norm:
                spans.append((i, i + n, label))
    # drop spans inside a longer matched span
    spans = [s for s in spans if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans)]
    clauses = _clause_ids(text)
    if len(clauses) != len(words):  # cannot happen (same word pattern); one clause then
        clauses = [0] * len(words)

    def is_negated(span: tuple[int, int, str]) -> bool:
        start, end, _ = span
        if start > 0 and words[start - 1] in _NEGATIONS:
            return True
        if any(w in _SCOPE_NEGATIONS for k, w in enumerate(words[:start]) if clauses[k] == clauses[start]):
            return True
        # "sarcastic or not" hedges; "sarcastic or not sarcastic" names two labels (ambiguous, not negated)
        return (end + 1 < len(words) and words[end] == "or" and words[end + 1] in ("not", "no")
                and clauses[end + 1] == clauses[end - 1] and not any(o[0] == end + 1 for o in spans))

    negated = [s for s in spans if is_negated(s)]
    found = sorted({s[2] for s in spans if s not in negated})
    if len(found) == 1 and not negated:
        return Parsed(found[0], "label")
    if negated:
        return Invalid(f"negated label ({', '.join(sorted({s[2] for s in negated}))}) in the answer", text)
    if found:
        return Invalid(f"ambiguous answer: names {', '.join(found)}", text)
    return Invalid(f"no label of {labels} in the answer", text)


def parse_label(
    text: str, labels: Sequence[str], *, field: str = "label", parsed: Any = None, finish_reason: str | None = None
) -> ParseResult:
    """A label from a JSON answer's `field` if there is one, else from the free text (unless the text
    looks like JSON or was truncated: then it is `Invalid`, see `free_text_blocked`)."""
    value = parsed if parsed is not None else extract_json(text)
    if isinstance(value, dict) and field in value:
        if not isinstance(value[field], str):
            return Invalid(f"JSON field {field!r} is {type(value[field]).__name__}, not a label", text)
        result = match_label(value[field], labels)
        if isinstance(result, Parsed):
            return Parsed(result.value, "json")
        return Invalid(f"JSON field {field!r}: {result.reason}", text)
    blocked = free_text_blocked(text, finish_reason)
    if blocked is not None:
        return Invalid(blocked, text)
    return match_label(text, labels)


def invalid_rate(results: Sequence[ParseResult]) -> float:
    """Share of answers that could not be parsed (reported next to the metric)."""
    return sum(not r.ok for r in results) / len(results) if results else 0.0
