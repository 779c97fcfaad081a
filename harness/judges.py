"""MLLM judges: a model plus a versioned rubric returns a structured verdict; a panel votes.

A `Rubric` is a prompt template and an output schema with a name and version; its hash goes into
every judge request (so cached verdicts are keyed by the rubric) and into reports. A `JudgePanel`
takes the majority of its judges' valid verdicts and reports their agreement: Cohen's kappa for two
judges, Fleiss' kappa for more. Judges are built by the CLI (`--judge M`, repeatable) through
`panel_from_models`, never at import time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from harness.core import HarnessError
from harness.models.base import ChatRequest, Message, ModelBackend, Part
from harness.structured import Invalid, Parsed, extract_json, match_label, parse_model


@dataclass(frozen=True)
class Rubric:
    """`template` is a `str.format` template over the fields a judge is given; `output_schema` a pydantic
    model (or JSON schema) for the verdict; `verdict_field` is the field that panels vote on."""

    name: str
    version: str
    template: str
    output_schema: type[BaseModel] | Mapping[str, Any]
    verdict_field: str = "verdict"
    system: str = "You are a careful, impartial evaluator. Follow the rubric exactly."

    @property
    def schema(self) -> dict[str, Any]:
        if isinstance(self.output_schema, Mapping):
            return dict(self.output_schema)
        return self.output_schema.model_json_schema()

    @property
    def hash(self) -> str:
        blob = json.dumps(
            [self.name, self.version, self.template, self.schema, self.verdict_field, self.system], sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def labels(self) -> list[str] | None:
        """The verdict's allowed values when the schema gives an enum."""
        schema = self.schema
        prop = schema.get("properties", {}).get(self.verdict_field, {})
        if "$ref" in prop:
            prop = schema.get("$defs", {}).get(prop["$ref"].rsplit("/", 1)[-1], {})
        if "enum" in prop:
            return [str(v) for v in prop["enum"]]
        return None

    def render(self, **fields: Any) -> str:
        return self.template.format(**fields)


@dataclass(frozen=True)
class Verdict:
    judge: str
    rubric: str  # name@version#hash
    value: Hashable | None  # the verdict field; None when the answer was invalid
    fields: Mapping[str, Any] = field(default_factory=dict)  # the whole structured verdict
    error: str | None = None
    raw: str = ""
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class Judge:
    """One model judging with one rubric at temperature 0."""

    def __init__(self, backend: ModelBackend, rubric: Rubric, *, max_tokens: int = 512, name: str | None = None,
                 ) -> None:
        self.backend = backend
        self.rubric = rubric
        self.max_tokens = max_tokens
        self._name = name

    @property
    def name(self) -> str:
        """The model, or MODEL@URL when the panel has the same model on two endpoints (as grading seats)."""
        return self._name or self.backend.model

    def request(self, images: Sequence[Part] = (), **fields: Any) -> ChatRequest:
        r = self.rubric
        system = f"{r.system}\n(rubric {r.name} v{r.version}, {r.hash})"
        user = (Part("text", text=r.render(**fields)), *images)
        return ChatRequest(
            messages=(Message.text("system", system), Message("user", user)),
            temperature=0.0,
            max_tokens=self.max_tokens,
            json_schema=r.schema,
            role=f"judge/{self.name}",
        )

    async def judge(self, images: Sequence[Part] = (), **fields: Any) -> Verdict:
        """Ask for a verdict; media (e.g. the edited image) go as `images` parts."""
        r = self.rubric
        tag = f"{r.name}@{r.version}#{r.hash}"
        try:
            response = await self.backend.chat(self.request(images, **fields))
        except Exception as exc:  # a failed judge call is an invalid verdict, not a crashed run
            return Verdict(self.name, tag, None, error=f"judge call failed: {exc}")
        return self._verdict(response.text, response.parsed, tag, response.cached)

    def _verdict(self, text: str, parsed: Any, tag: str, cached: bool) -> Verdict:
        r = self.rubric
        if not isinstance(r.output_schema, Mapping):
            result = parse_model(text, r.output_schema, parsed)
            if isinstance(result, Invalid):
                return Verdict(self.name, tag, None, error=result.reason, raw=text, cached=cached)
            values = result.value.model_dump(mode="json")
        else:
            values = parsed if parsed is not None else extract_json(text)
            if not isinstance(values, dict):
                return Verdict(self.name, tag, None, error="no JSON object in the answer", raw=text, cached=cached)
        if r.verdict_field not in values:
            return Verdict(self.name, tag, None, values, f"no {r.verdict_field!r} in the verdict", text, cached)
        value = values[r.verdict_field]
        if value is None:  # a JSON null names no label (str(None) would read as a label "none")
            return Verdict(self.name, tag, None, values, f"null {r.verdict_field!r} in the verdict", text, cached)
        if r.labels is not None:
            label = match_label(str(value), r.labels)
            if not isinstance(label, Parsed):
                return Verdict(self.name, tag, None, values, label.reason, text, cached)
            value = label.value
        hashable = value if isinstance(value, Hashable) else json.dumps(value, sort_keys=True)
        return Verdict(self.name, tag, hashable, values, None, text, cached)


@dataclass(frozen=True)
class PanelVerdict:
    verdicts: tuple[Verdict, ...]
    value: Hashable | None  # the majority of valid verdicts; None on a tie or when none is valid
    votes: Mapping[Hashable, int]
    tie: bool = False

    @property
    def ok(self) -> bool:
        return self.value is not None


def majority(values: Sequence[Hashable | None]) -> tuple[Hashable | None, dict[Hashable, int], bool]:
    """Most common valid value; (None, votes, True) on a tie between the top values."""
    votes = Counter(v for v in values if v is not None)
    if not votes:
        return None, {}, False
    ranked = votes.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None, dict(votes), True
    return ranked[0][0], dict(votes), False


class JudgePanel:
    def __init__(self, judges: Sequence[Judge]) -> None:
        if not judges:
            raise ValueError("a judge panel needs at least one judge")
        self.judges = list(judges)

    @property
    def rubric(self) -> Rubric:
        return self.judges[0].rubric

    async def judge(self, images: Sequence[Part] = (), **fields: Any) -> PanelVerdict:
        verdicts = await asyncio.gather(*(j.judge(images, **fields) for j in self.judges))
        value, votes, tie = majority([v.value for v in verdicts])
        return PanelVerdict(tuple(verdicts), value, votes, tie)

    def agreement(self, items: Sequence[PanelVerdict]) -> dict[str, Any]:
        """Inter-judge agreement over items where every judge gave a valid verdict."""
        return agreement([[v.value for v in item.verdicts] for item in items])

    async def aclose(self) -> None:
        for judge in self.judges:
            await judge.backend.aclose()


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters, (p_o - p_e) / (1 - p_e), from scikit-learn (labels of any hashable type)."""
    if len(a) != len(b) or not a:
        raise ValueError("two equally long, non-empty rating lists are needed")
    n = len(a)
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[k] * count_b[k] for k in count_a) / (n * n)
    if expected == 1.0:  # both raters used one and the same category throughout: sklearn gives nan
        return 1.0
    from sklearn.metrics import cohen_kappa_score

    labels = sorted(set(a) | set(b), key=repr)
    codes = {label: i for i, label in enumerate(labels)}
    return float(cohen_kappa_score([codes[x] for x in a], [codes[x] for x in b], labels=list(range(len(labels)))))


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa from an items x categories table of how many raters chose each category."""
    if not counts:
        raise ValueError("no items")
    raters = sum(counts[0])
    if raters < 2 or any(sum(row) != raters for row in counts):
        raise ValueError("every item needs the same number (>= 2) of ratings")
    n_items = len(counts)
    p_items = [(sum(c * c for c in row) - raters) / (raters * (raters - 1)) for row in counts]
    p_bar = sum(p_items) / n_items
    totals = [sum(row[j] for row in counts) for j in range(len(counts[0]))]
    p_e = sum((t / (n_items * raters)) ** 2 for t in totals)
    if p_e == 1.0:
        return 1.0 if p_bar == 1.0 else 0.0
    return (p_bar - p_e) / (1 - p_e)


def agreement(ratings: Sequence[Sequence[Hashable | None]]) -> dict[str, Any]:
    """Agreement of judges over items (rows: items, columns: judges). Items where any judge's verdict is
    invalid (None) are left out and counted."""
    complete = [row for row in ratings if all(v is not None for v in row)]
    result: dict[str, Any] = {"items": len(complete), "items_left_out": len(ratings) - len(complete)}
    if not complete:
        return result
    n_judges = len(complete[0])
    if n_judges == 2:
        result["cohen_kappa"] = cohen_kappa([r[0] for r in complete], [r[1] for r in complete])
    elif n_judges > 2:
        categories = sorted({v for row in complete for v in row}, key=repr)
        table = [[Counter(row)[c] for c in categories] for row in complete]
        result["fleiss_kappa"] = fleiss_kappa(table)
    return result


def panel_from_models(models: Sequence[Any], make_backend_kwargs: Mapping[str, Any], rubric: Rubric) -> JudgePanel:
    """One judge per `--judge M[@URL]`, each on its own backend (cached and retried like any model call).
    `models` are names (all on `make_backend_kwargs["base_url"]`) or role specs with `.model` and
    `.base_url` (`harness.roles.RoleSpec`): a spec's own URL wins, since one `vllm serve` serves one model."""
    from harness.models import make_backend

    specs: list[tuple[str, dict[str, Any]]] = []
    seen: set[tuple[str, str | None]] = set()
    for m in models:
        kwargs = dict(make_backend_kwargs)
        if not isinstance(m, str):
            kwargs["base_url"] = m.base_url or kwargs.get("base_url")
            m = m.model
        if (m, kwargs.get("base_url")) in seen:  # it would answer its twin from the cache: kappa 1 by construction
            raise HarnessError(f"--judge {m}@{kwargs.get('base_url')} is given twice: a panel needs different "
                               "judges, each on its own endpoint (--judge MODEL@URL)")
        seen.add((m, kwargs.get("base_url")))
        specs.append((m, kwargs))
    names = [m for m, _ in specs]  # one model on two endpoints: two judges, told apart (and counted) by URL
    return JudgePanel([
        Judge(make_backend(m, **kw), rubric, name=m if names.count(m) == 1 else f"{m}@{kw.get('base_url')}")
        for m, kw in specs
    ])
