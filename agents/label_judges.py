"""Judges that read a label out of a free-text answer the solver could not parse (`--judge M`).

Only answers that are neither valid JSON nor name exactly one label reach the judges. Each judge
(`harness.judges.Judge`, a versioned rubric, temperature 0, cached) names the label the answer
chooses, or "none"; a judge's answer outside the label set counts as no verdict. The panel's majority
wins (a tie, no valid verdict, or a judge whose call failed leaves the prediction invalid: every judge
of the panel must answer, as in `harness.grading`), and the per-judge labels, votes and
agreement go into the sample's info, so `harness.judges.agreement` can compute kappa over a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from harness.core import RunContext
from harness.judges import JudgePanel, Rubric, majority, panel_from_models
from harness.structured import Parsed, match_label


class LabelChoice(BaseModel):
    label: str
    reason: str = ""


LABEL_RUBRIC = Rubric(
    name="label-extraction",
    version="1",
    template=(
        "A model was asked to choose one {head} label from this list: {labels}.\n"
        "Its answer was:\n-----\n{answer}\n-----\n"
        "Which label from the list does the answer choose? Give the label exactly as written in the list. "
        'If the answer chooses no label, or more than one, give "none". '
        'Answer with one JSON object: {{"label": "...", "reason": "..."}}.'
    ),
    output_schema=LabelChoice,
    verdict_field="label",
)


class JudgeExtractor:
    """An `agents.llm.Extractor` backed by a judge panel."""

    def __init__(self, panel: JudgePanel) -> None:
        self.panel = panel

    async def __call__(self, text: str, head: str, labels: Sequence[str]) -> tuple[str | None, dict[str, Any]]:
        result = await self.panel.judge(head=head, labels=", ".join(labels), answer=text[:4000])
        chosen: list[str | None] = []
        for verdict in result.verdicts:
            match = match_label(str(verdict.value), labels) if verdict.ok else None
            chosen.append(match.value if isinstance(match, Parsed) else None)
        value, votes, tie = majority(chosen)
        # Quorum: every judge of the panel answered (as `harness.grading`'s default). A panel of two with
        # one judge down is another method (one judge alone): its label would not be the panel's.
        failed = [v.judge for v in result.verdicts if v.error and v.error.startswith("judge call failed")]
        if failed:
            value = None
        valid = [c for c in chosen if c is not None]
        info: dict[str, Any] = {
            "rubric": result.verdicts[0].rubric if result.verdicts else "",
            "judges": [v.judge for v in result.verdicts],
            "labels": chosen,
            "votes": votes,
            "tie": tie,
            "agreement": (sum(c == value for c in valid) / len(chosen)) if value is not None and chosen else 0.0,
        }
        errors = [v.error for v in result.verdicts if v.error]
        if errors:
            info["errors"] = errors
        if failed:
            info["no_quorum"] = f"{len(failed)} of {len(result.verdicts)} judges failed ({', '.join(failed)})"
        return (str(value) if value is not None else None), info

    async def aclose(self) -> None:
        await self.panel.aclose()


def judge_extractor(ctx: RunContext) -> JudgeExtractor | None:
    """The run's `--judge` panel as a label extractor, or None without judges."""
    from harness.roles import judge_roles

    # each judge on its own endpoint (`--judge MODEL@URL`); plain `--judge M` names share --base-url
    specs: list[Any] = judge_roles(getattr(ctx, "roles", {}) or {}) or list(ctx.judges)
    if not specs:
        return None
    kwargs = {
        "base_url": ctx.base_url, "api_key": ctx.api_key, "cache_dir": ctx.cache_dir, "use_cache": ctx.use_cache,
        "concurrency": ctx.concurrency, "timeout_s": ctx.request_timeout_s, "max_retries": ctx.max_retries,
        "transcripts": getattr(ctx, "transcripts", None),
    }
    return JudgeExtractor(panel_from_models(specs, kwargs, LABEL_RUBRIC))
