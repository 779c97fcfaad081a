"""Judges as graders: a panel of MLLMs answers a versioned rubric of questions about one item.

Why a panel and a rubric: a number that rests on one model's opinion says as much about that model as about
the system evaluated. A `QuestionRubric` fixes the questions (yes/no, or graded on an integer scale), their
wording and version; its hash goes into every request, so cached answers are keyed by it. A `GradingPanel`
asks each judge (one `ModelBackend` per judge, each on its own endpoint: one `vllm serve` serves one model)
all questions at once, at temperature 0, with a JSON schema, and takes per question the majority of the
valid answers.

Tie rule (documented, deterministic): a question's `on_tie` decides. A value (e.g. "yes") is taken as the
outcome of a tie; "lower"/"higher" take the lower/higher of the tied grades; None leaves the question
undecided (`value=None, tie=True`). The ISR rubric (`harness.rubrics`) resolves ties to the answer that does
NOT count as immunization success, so a split panel never inflates the success rate.

Failures are loud: a judge call that fails is recorded per sample (`errors`) and in the transcript
(`judge_error`); when a question has fewer valid answers than the quorum (default: every judge) `grade`
raises `JudgeError`, so that sample is an error of the run and never a silent zero. Agreement over a run:
Cohen's kappa (scikit-learn) for two judges, Fleiss' kappa for more, per question (`rubric_agreement`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.core import HarnessError
from harness.judges import agreement
from harness.models.base import ChatRequest, Message, ModelBackend, Part
from harness.structured import extract_json, normalize

YES_NO = ("yes", "no")


class JudgeError(HarnessError):
    """Too few judges answered a question validly (a judge endpoint failing, unreadable answers)."""


@dataclass(frozen=True)
class Question:
    """One rubric question. `text` is a `str.format` template over the item's fields."""

    id: str
    text: str
    kind: Literal["yes_no", "graded"] = "yes_no"
    scale: tuple[int, int] = (1, 5)  # graded: lowest and highest grade
    on_tie: str | int | None = None  # a value, "lower"/"higher" (graded), or None = undecided

    def schema(self) -> dict[str, Any]:
        if self.kind == "yes_no":
            return {"type": "string", "enum": list(YES_NO)}
        return {"type": "integer", "minimum": self.scale[0], "maximum": self.scale[1]}

    def read(self, value: Any) -> str | int | None:
        """The answer as "yes"/"no" or an int grade in the scale, else None (invalid)."""
        if self.kind == "yes_no":
            if isinstance(value, bool):
                return "yes" if value else "no"
            text = normalize(str(value)) if value is not None else ""
            return text if text in YES_NO else None
        if isinstance(value, bool):
            return None
        try:
            grade = int(value)
        except (TypeError, ValueError):
            return None
        if grade != value and str(grade) != str(value).strip():
            return None
        return grade if self.scale[0] <= grade <= self.scale[1] else None

    def decide(self, answers: Sequence[str | int | None]) -> tuple[str | int | None, bool]:
        """(majority of the valid answers, tie?) under the question's tie rule."""
        votes = Counter(a for a in answers if a is not None)
        if not votes:
            return None, False
        ranked = votes.most_common()
        top = [v for v, c in ranked if c == ranked[0][1]]
        if len(top) == 1:
            return top[0], False
        if self.on_tie == "lower":
            return min(top), True  # type: ignore[type-var]
        if self.on_tie == "higher":
            return max(top), True  # type: ignore[type-var]
        return self.on_tie, True


@dataclass(frozen=True)
class QuestionRubric:
    """`context` (a `str.format` template over the item's fields) introduces the item; then the questions."""

    name: str
    version: str
    questions: tuple[Question, ...]
    context: str = ""
    system: str = ("You are a careful, impartial evaluator. Look only at what you are shown and answer every "
                   "question exactly as asked.")

    def __post_init__(self) -> None:
        ids = [q.id for q in self.questions]
        if not ids or len(set(ids)) != len(ids) or "reason" in ids:
            raise ValueError(f"rubric {self.name}: question ids must be unique, non-empty and not 'reason'")

    @property
    def hash(self) -> str:
        blob = json.dumps([self.name, self.version, self.context, self.system,
                           [[q.id, q.text, q.kind, list(q.scale), q.on_tie] for q in self.questions]])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}#{self.hash}"

    def schema(self) -> dict[str, Any]:
        props: dict[str, Any] = {q.id: q.schema() for q in self.questions}
        props["reason"] = {"type": "string"}
        return {"title": f"{self.name}-answers", "type": "object", "properties": props,
                "required": [q.id for q in self.questions]}

    def prompt(self, **fields: Any) -> str:
        lines = [self.context.format(**fields)] if self.context else []
        lines.append("Answer each question:")
        for q in self.questions:
            how = "yes or no" if q.kind == "yes_no" else f"an integer grade from {q.scale[0]} to {q.scale[1]}"
            lines.append(f'- "{q.id}": {q.text.format(**fields)} ({how})')
        keys = ", ".join(f'"{q.id}": ...' for q in self.questions)
        lines.append(f'Answer with one JSON object: {{{keys}, "reason": "one sentence"}}.')
        return "\n".join(lines)


@dataclass(frozen=True)
class JudgeSeat:
    """One judge of a panel: a display name (unique in the panel) and its backend."""

    name: str
    backend: ModelBackend


@dataclass
class Grading:
    """One item graded by a panel: per question, every judge's answer (None = no valid answer), the
    outcome and whether it came from the tie rule; per judge, its error if its call or answer failed."""

    rubric: str
    judges: list[str]
    answers: dict[str, list[str | int | None]] = field(default_factory=dict)  # question -> per judge
    values: dict[str, str | int | None] = field(default_factory=dict)
    ties: dict[str, bool] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """For samples.jsonl: everything `rubric_agreement` needs later."""
        return {"rubric": self.rubric, "judges": self.judges, "answers": self.answers, "values": self.values,
                "ties": self.ties, "errors": self.errors}


class GradingPanel:
    """Two or more judges; `await grade(rubric, images, **fields)` per item."""

    def __init__(self, seats: Sequence[JudgeSeat], *, quorum: int | None = None, max_tokens: int = 256) -> None:
        if not seats:
            raise HarnessError("a judge panel needs at least one judge (--judge MODEL@URL, repeatable)")
        names = [s.name for s in seats]
        if len(set(names)) != len(names):
            raise HarnessError(f"judge names must be unique in a panel: {names}")
        self.seats = list(seats)
        self.quorum = len(seats) if quorum is None else quorum
        if not 1 <= self.quorum <= len(seats):
            raise HarnessError(f"quorum {quorum} is not between 1 and the {len(seats)} judges")
        self.max_tokens = max_tokens

    @classmethod
    def from_roles(cls, specs: Sequence[Any], ctx: Any = None, **kwargs: Any) -> GradingPanel:
        """One judge per role spec (anything with `.model` and `.base_url`, e.g. `harness.roles.RoleSpec`),
        built with the run's settings from `ctx` (a `RunContext`): cache, timeouts, retries, transcripts.
        A spec without its own base URL uses the run's `--base-url`."""
        from harness.models import make_backend

        seats = []
        models = [s.model for s in specs]
        for spec in specs:
            url = spec.base_url or getattr(ctx, "base_url", None)
            name = spec.model if models.count(spec.model) == 1 else f"{spec.model}@{url}"
            backend = make_backend(
                spec.model, base_url=url, api_key=getattr(ctx, "api_key", None),
                cache_dir=getattr(ctx, "cache_dir", None), use_cache=getattr(ctx, "use_cache", True),
                concurrency=getattr(ctx, "concurrency", 8), timeout_s=getattr(ctx, "request_timeout_s", 120.0),
                max_retries=getattr(ctx, "max_retries", 8), transcripts=getattr(ctx, "transcripts", None),
            )
            seats.append(JudgeSeat(name, backend))
        return cls(seats, **kwargs)

    def request(self, seat: JudgeSeat, rubric: QuestionRubric, images: Sequence[Part], fields: Mapping[str, Any]
                ) -> ChatRequest:
        system = f"{rubric.system}\n(rubric {rubric.name} v{rubric.version}, {rubric.hash})"
        # media first, then the questions: the same images prefix every judge's and question's request
        user = (*images, Part("text", text=rubric.prompt(**fields)))
        return ChatRequest(messages=(Message.text("system", system), Message("user", user)), temperature=0.0,
                           max_tokens=self.max_tokens, seed=0, json_schema=rubric.schema(),
                           role=f"judge/{seat.name}")

    async def _ask(self, seat: JudgeSeat, rubric: QuestionRubric, images: Sequence[Part],
                   fields: Mapping[str, Any]) -> tuple[dict[str, str | int | None], str | None, str]:
        try:
            response = await seat.backend.chat(self.request(seat, rubric, images, fields))
        except Exception as exc:  # recorded per judge; the quorum decides whether the item stands
            return {q.id: None for q in rubric.questions}, f"call failed: {exc}", ""
        obj = response.parsed if isinstance(response.parsed, Mapping) else extract_json(response.text)
        if not isinstance(obj, Mapping):
            why = "answer cut off at max_tokens" if response.raw.get("finish_reason") == "length" else "no JSON"
            return {q.id: None for q in rubric.questions}, f"unreadable answer ({why}): {response.text[:200]}", ""
        answers = {q.id: q.read(obj.get(q.id)) for q in rubric.questions}
        bad = [q.id for q in rubric.questions if answers[q.id] is None]
        error = f"invalid answer to {', '.join(bad)}: {json.dumps(obj)[:200]}" if bad else None
        return answers, error, str(obj.get("reason") or "")[:500]

    async def grade(self, rubric: QuestionRubric, images: Sequence[Part] = (), **fields: Any) -> Grading:
        results = await asyncio.gather(*(self._ask(s, rubric, images, fields) for s in self.seats))
        grading = Grading(rubric.tag, [s.name for s in self.seats])
        for seat, (_, error, reason) in zip(self.seats, results, strict=True):
            if error:
                grading.errors[seat.name] = error
            if reason:
                grading.reasons[seat.name] = reason
        for q in rubric.questions:
            per_judge = [answers[q.id] for answers, _, _ in results]
            grading.answers[q.id] = per_judge
            grading.values[q.id], grading.ties[q.id] = q.decide(per_judge)
            valid = sum(a is not None for a in per_judge)
            if valid < self.quorum:
                errors = "; ".join(f"{name}: {err}" for name, err in grading.errors.items())
                raise JudgeError(f"judge error: question {q.id!r} of {rubric.tag} has {valid} valid answer(s), "
                                 f"{self.quorum} needed ({errors})")
        return grading

    async def aclose(self) -> None:
        for seat in self.seats:
            await seat.backend.aclose()


def judge_panel(sctx: Any, *, quorum: int | None = None, min_judges: int = 2) -> GradingPanel:
    """The run's judge panel (roles judge, judge2, … from `--judge MODEL@URL`), built once per run and
    shared by every sample's scoring: `panel = judge_panel(sctx)` in a task's `ascore`. Fewer than
    `min_judges` judges is an error (a majority of one is one model's opinion)."""
    from harness.roles import judge_roles

    specs = judge_roles(sctx.roles)
    if len(specs) < min_judges:
        raise HarnessError(f"this task is scored by a panel of MLLM judges: give at least {min_judges}, each on "
                           f"its own endpoint (--judge MODEL@http://HOST:PORT/v1, repeatable); got {len(specs)}")
    return sctx.resource("harness.grading.panel", lambda: GradingPanel.from_roles(specs, sctx.run, quorum=quorum))


def rubric_agreement(gradings: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per question, the judges' agreement over items (`Grading.to_dict()`s, e.g. read back from
    samples.jsonl): Cohen's kappa for two judges, Fleiss' for more, over items every judge answered;
    plus the share of decisions made by the tie rule."""
    out: dict[str, Any] = {}
    questions = sorted({q for g in gradings for q in g.get("answers", {})})
    for q in questions:
        rows = [list(g["answers"][q]) for g in gradings if q in g.get("answers", {})]
        result = agreement(rows)
        ties = [bool(g.get("ties", {}).get(q)) for g in gradings if q in g.get("answers", {})]
        result["tie_share"] = sum(ties) / len(ties) if ties else 0.0
        complete = [r for r in rows if all(v is not None for v in r)]
        if complete:
            result["percent_agreement"] = sum(len(set(r)) == 1 for r in complete) / len(complete)
        out[q] = result
    return out
