"""MOTOR-MAS (arXiv 2605.09703) as a LangGraph `StateGraph`.

    START -> behavior -> cognition -> emotion -> coordinator --(consistent / bound reached)--> END
                 ^            ^           ^          |
                 +------------+-----------+----------+  (one head sent back, with a reason)

Each head agent reasons from observable evidence (sampled frames, audio when sent, the transcript) and
the heads answered before it, and returns ``{label, evidence, confidence}``. The coordinator checks the
three answers for consistency and may send ONE head back for revision with a reason; the revised head
sees every other answer, and the heads after it run again (they depended on the old answer) before the
coordinator looks again. At most `max_revisions` revisions happen per clip. Every node is one structured
call through a `ModelBackend`, so the graph runs on any backend; every node appends an entry to the trace
that ends up in samples.jsonl, and every call is named by its node in transcripts.jsonl.

Prompt layout (for the server's prefix cache): every call of a clip starts with the same system text and
the same media, then the transcript; what is specific to one agent (its role, the labels of its head with
their definitions, earlier answers) comes last. vLLM's automatic prefix caching then computes the frames'
tokens once per clip instead of once per agent call. Label names and definitions come only from the
data's vocabulary, never from the prompt text.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, Field

from agents.llm import Answer, CallSettings, Extractor, ask, find_label, label_field, parse_labels, summarise_parts
from harness.models.base import Message, ModelBackend, Part
from harness.structured import free_text_blocked, looks_like_json

HEAD_ROLES: dict[str, str] = {
    "behavior": "the learners' observable collaborative behavior: what they do and say "
    "(talk, gaze, gestures, use of materials)",
    "cognition": "the cognitive process the observable evidence shows, taking the behavior into account",
    "emotion": "the emotion the learners express in faces, voice and words, taking behavior and "
    "cognition into account",
}
SHARED_SYSTEM = (
    "You are part of a team annotating a short video clip of students learning together in small groups. "
    "Reason only from observable evidence: the frames, the audio when given, and the transcript."
)

@dataclass(frozen=True)
class Evidence:
    """What the agents may look at for one clip."""

    media: tuple[Part, ...]  # a video part with num_frames, or image parts
    transcript: str
    vocab: Mapping[str, Sequence[str]]
    definitions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


class Verdict(BaseModel):
    consistent: bool
    revise: str | None = Field(default=None, description="the ONE head to send back, or null")
    reason: str = ""


class MASState(TypedDict, total=False):
    evidence: Evidence
    answers: dict[str, dict[str, Any]]
    pending: str | None  # head under revision
    just_revised: bool  # the last head node ran as a revision (informational; later heads re-run after it)
    reason: str | None
    revisions: int
    consistent: bool | None
    trace: Annotated[list[dict[str, Any]], operator.add]
    settings: CallSettings


def head_schema(labels: Sequence[str]) -> type[BaseModel]:
    from pydantic import create_model

    return create_model(
        "HeadAnswer",
        label=(label_field(labels), ...),
        evidence=(str, ""),
        confidence=(float, Field(default=0.5, ge=0.0, le=1.0)),
    )


def vocab_text(head: str, ev: Evidence) -> str:
    """The labels of one head, each with its definition from the data's vocabulary when it has one (the
    same text for every solver that is compared: mllm, motor-mas, mas-vote)."""
    return _vocab_text(head, ev)


def evidence_messages(ev: Evidence, instruction: str) -> list[Message]:
    """[shared system, user: media..., transcript, instruction]: the clip's prefix is the same for every
    agent call, only `instruction` differs."""
    parts = (*ev.media, Part("text", text=f"Transcript:\n{ev.transcript or '(none)'}"), Part("text", text=instruction))
    return [Message.text("system", SHARED_SYSTEM), Message("user", parts)]


def _vocab_text(head: str, ev: Evidence) -> str:
    defs = ev.definitions.get(head, {})
    return "\n".join(f"- {lab}" + (f": {defs[lab]}" if defs.get(lab) else "") for lab in ev.vocab[head])


def _answers_text(answers: Mapping[str, Mapping[str, Any]], heads: Sequence[str]) -> str:
    lines = []
    for head in heads:
        a = answers.get(head)
        if a is None:
            continue
        label = a.get("label") or "(no valid answer)"
        lines.append(f"- {head}: {label} (confidence {a.get('confidence', 0):.2f}); evidence: {a.get('evidence', '')}")
    return "\n".join(lines)


class MotorMAS:
    """Build once per solver; `await run(evidence)` per clip."""

    def __init__(
        self,
        backend: ModelBackend,
        settings: CallSettings,
        *,
        heads: Sequence[str] = ("behavior", "cognition", "emotion"),
        max_revisions: int = 2,
        extractor: Extractor | None = None,
    ) -> None:
        from langgraph.graph import END, START, StateGraph

        self.backend, self.settings, self.heads = backend, settings, tuple(heads)
        self.max_revisions, self.extractor = max_revisions, extractor
        graph = StateGraph(MASState)
        for head in self.heads:
            graph.add_node(head, self._head_node(head))
        graph.add_node("coordinator", self._coordinator)
        graph.add_edge(START, self.heads[0])
        for i, head in enumerate(self.heads):  # after a revision too: the later heads depend on it
            graph.add_edge(head, self.heads[i + 1] if i + 1 < len(self.heads) else "coordinator")
        graph.add_conditional_edges("coordinator", self._route, [*self.heads, END])
        self._end = END
        self.graph = graph.compile()

    async def run(self, evidence: Evidence, settings: CallSettings | None = None) -> MASState:
        """One clip; `settings` override the graph's (an epoch's seed)."""
        state: MASState = {"evidence": evidence, "answers": {}, "pending": None, "just_revised": False, "reason": None,
                           "revisions": 0, "consistent": None, "trace": [], "settings": settings or self.settings}
        limit = 10 + 2 * (len(self.heads) + 1) * (self.max_revisions + 1)
        return await self.graph.ainvoke(state, {"recursion_limit": limit})  # type: ignore[return-value]

    # -- nodes ---------------------------------------------------------------------------------
    def _head_node(self, head: str) -> Callable[[MASState], Awaitable[dict[str, Any]]]:
        async def node(state: MASState) -> dict[str, Any]:
            ev, answers = state["evidence"], state["answers"]
            revising = state.get("pending") == head
            i = self.heads.index(head)
            shown = [h for h in self.heads if h != head] if revising else list(self.heads[:i])
            instruction = (
                f"You are the {head} agent. Judge {HEAD_ROLES.get(head, head)}. "
                f"Choose exactly one {head} label:\n{vocab_text(head, ev)}"
            )
            if shown:
                instruction += f"\n\nAnswers so far:\n{_answers_text(answers, shown)}"
            if revising:
                prev = answers.get(head, {})
                instruction += (
                    f"\n\nThe coordinator asks you to revise your {head} answer "
                    f"({prev.get('label') or 'no valid answer'}): {state.get('reason') or ''}"
                )
            instruction += ('\n\nAnswer with one JSON object: {"label": ..., "evidence": "what you saw or heard", '
                            '"confidence": 0..1}.')
            messages = evidence_messages(ev, instruction)
            settings = state.get("settings") or self.settings
            answer = await ask(self.backend, messages, head_schema(ev.vocab[head]), settings, role=head)
            out = await self._head_output(answer, head, ev.vocab[head])
            summary = summarise_parts(messages[1].content)
            if shown:
                summary += "; given " + ", ".join(f"{h}={answers[h].get('label')}" for h in shown if h in answers)
            entry = {
                "node": head,
                "input": summary,
                "output": {k: out[k] for k in ("label", "evidence", "confidence")},
                "revision_reason": state.get("reason") if revising else None,
            }
            for key in ("invalid", "raw", "error", "extracted_by", "judge"):
                if key in out:
                    entry[key] = out[key]
            return {"answers": {**answers, head: out}, "pending": None, "just_revised": revising, "trace": [entry]}

        return node

    async def _head_output(self, answer: Answer[Any], head: str, labels: Sequence[str]) -> dict[str, Any]:
        if answer.value is not None:
            return answer.value.model_dump()
        out: dict[str, Any] = {"label": None, "evidence": "", "confidence": 0.0, "error": answer.error}
        # As the mllm and mas-vote solvers read answers: a JSON object whose "label" is a valid label gives
        # that label even when another field fails validation (a confidence of 1.5), so that the solvers
        # are compared on what the model answered, not on how strictly each one parses.
        label = parse_labels(answer.text, None, {"label": labels}, answer.finish_reason)["label"]
        if label is not None:
            out.update(label=label, extracted_by="json" if looks_like_json(answer.text) else "text")
            return out
        blocked = free_text_blocked(answer.text, answer.finish_reason)
        if blocked is not None:  # cut at max_tokens or JSON that did not validate: invalid, never a label
            out.update(invalid=True, raw=answer.text[:2000], error=f"{blocked} ({answer.error})")
            return out
        label = find_label(answer.text, labels)  # tolerant free-text fallback
        by = "text"
        if label is None and self.extractor is not None:
            label, out["judge"] = await self.extractor(answer.text, head, labels)
            by = "judge"
        if label is not None:
            out.update(label=label, extracted_by=by)
        else:
            out.update(invalid=True, raw=answer.text[:2000])
        return out

    async def _coordinator(self, state: MASState) -> dict[str, Any]:
        ev, answers = state["evidence"], state["answers"]
        instruction = (
            "You are the coordinator of the team. Check whether the behavior, cognition and emotion answers are "
            "consistent with each other and with the evidence they cite. If one is not, name the ONE head to "
            'revise and why. Answer with one JSON object: {"consistent": true|false, "revise": "<head>"|null, '
            f'"reason": "..."}}.\n\nAnswers:\n{_answers_text(answers, self.heads)}'
        )
        text = f"Transcript:\n{ev.transcript or '(none)'}"
        messages = [Message.text("system", SHARED_SYSTEM),
                    Message("user", (Part("text", text=text), Part("text", text=instruction)))]
        answer = await ask(self.backend, messages, Verdict, state.get("settings") or self.settings, role="coordinator")
        verdict = answer.value
        revisions = state.get("revisions", 0)
        pending: str | None = None
        note = None
        if verdict is None:
            note = f"invalid verdict ({answer.error}); stopping"
        elif not verdict.consistent and verdict.revise in self.heads:
            if revisions < self.max_revisions:
                pending, revisions = verdict.revise, revisions + 1
            else:
                note = f"revision bound ({self.max_revisions}) reached"
        elif not verdict.consistent:
            note = f"no valid head named ({verdict.revise!r}); stopping"
        entry: dict[str, Any] = {
            "node": "coordinator",
            "input": "answers: " + ", ".join(f"{h}={answers.get(h, {}).get('label')}" for h in self.heads),
            "output": verdict.model_dump() if verdict else None,
            "revision_reason": verdict.reason if pending and verdict else None,
            "send_back": pending,
        }
        if note:
            entry["note"] = note
        if verdict is None:
            entry["raw"] = answer.text[:2000]
        return {
            "pending": pending,
            "just_revised": False,
            "reason": verdict.reason if pending and verdict else None,
            "revisions": revisions,
            "consistent": verdict.consistent if verdict else None,
            "trace": [entry],
        }

    def _route(self, state: MASState) -> str:
        return state.get("pending") or self._end
