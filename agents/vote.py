"""A general multi-agent baseline: N independent agents, an optional debate round, majority vote.

    START -> agent_0 .. agent_{N-1} (in parallel) [-> debate_0 .. debate_{N-1}] -> vote -> END

Each agent predicts every head at once with a structured answer; in the debate round each agent
sees the others' first answers and may change its own. The vote is per head over valid answers;
ties go to the label with the higher summed confidence, then to the earlier label of the vocabulary,
so the outcome never depends on timing. This is the "general multi-agent system" MOTOR-MAS is
compared against: it has no head-specific roles and no coordinator, but it sees the same evidence and
the same label definitions. Agent i samples with seed + i at the solver's temperature (mas-vote's default
is 0.7: at temperature 0 the agents would differ by their perspective line only, and the vote would
mostly count one answer N times).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, Field, create_model

from agents.llm import CallSettings, ask, label_field, parse_labels, summarise_parts
from agents.motor_mas import Evidence, evidence_messages, vocab_text
from harness.models.base import ModelBackend

PERSPECTIVES: tuple[str, ...] = (
    "an educational psychologist",
    "an experienced classroom observer",
    "a learning scientist who studies collaboration",
    "a teacher of the students' age group",
    "a researcher of affect in learning",
)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {**a, **b}


class VoteState(TypedDict, total=False):
    evidence: Evidence
    first: Annotated[dict[str, dict[str, Any]], _merge]  # agent name -> answer
    final: Annotated[dict[str, dict[str, Any]], _merge]
    decision: dict[str, str | None]
    trace: Annotated[list[dict[str, Any]], operator.add]
    settings: CallSettings


def all_heads_schema(vocab: Mapping[str, Sequence[str]]) -> type[BaseModel]:
    fields: dict[str, Any] = {head: (label_field(labels), ...) for head, labels in vocab.items()}
    fields["confidence"] = (float, Field(default=0.5, ge=0.0, le=1.0))
    fields["rationale"] = (str, "")
    return create_model("AllHeads", **fields)


def majority_vote(
    answers: Sequence[Mapping[str, Any]], head: str, labels: Sequence[str]
) -> tuple[str | None, dict[str, int]]:
    """The winning label of a head and the vote counts; `None` when no agent answered validly."""
    counts: dict[str, int] = {}
    conf: dict[str, float] = {}
    for a in answers:
        label = a.get(head)
        if label in labels:
            counts[label] = counts.get(label, 0) + 1
            conf[label] = conf.get(label, 0.0) + float(a.get("confidence") or 0.0)
    if not counts:
        return None, counts
    winner = min(counts, key=lambda lab: (-counts[lab], -conf[lab], labels.index(lab)))
    return winner, counts


class VoteMAS:
    """Build once per solver; `await run(evidence)` per clip."""

    def __init__(
        self, backend: ModelBackend, settings: CallSettings, *, n_agents: int = 3, debate: bool = False
    ) -> None:
        from langgraph.graph import END, START, StateGraph

        if n_agents < 1:
            raise ValueError("n_agents must be at least 1")
        self.backend, self.settings, self.n_agents, self.debate = backend, settings, n_agents, debate
        self.agents = [f"agent_{i}" for i in range(n_agents)]
        graph = StateGraph(VoteState)
        for i, name in enumerate(self.agents):
            graph.add_node(name, self._agent(i, debate_round=False))
            graph.add_edge(START, name)
        if debate:
            debaters = [f"debate_{i}" for i in range(n_agents)]
            for i, name in enumerate(debaters):
                graph.add_node(name, self._agent(i, debate_round=True))
                graph.add_edge(self.agents, name)
            graph.add_node("vote", self._vote)
            graph.add_edge(debaters, "vote")
        else:
            graph.add_node("vote", self._vote)
            graph.add_edge(self.agents, "vote")
        graph.add_edge("vote", END)
        self.graph = graph.compile()

    async def run(self, evidence: Evidence, settings: CallSettings | None = None) -> VoteState:
        """One clip; `settings` override the graph's (an epoch's seed)."""
        state: VoteState = {"evidence": evidence, "first": {}, "final": {}, "decision": {}, "trace": [],
                            "settings": settings or self.settings}
        return await self.graph.ainvoke(state)  # type: ignore[return-value]

    def _agent(self, i: int, *, debate_round: bool) -> Callable[[VoteState], Awaitable[dict[str, Any]]]:
        name = self.agents[i]

        async def node(state: VoteState) -> dict[str, Any]:
            ev = state["evidence"]
            base = state.get("settings") or self.settings
            # each agent its own seed, so that at temperature > 0 the agents differ and the vote means something
            settings = dataclasses.replace(base, seed=None if base.seed is None else base.seed + i)
            # the same labels and definitions as the mllm and motor-mas solvers get (a fair comparison)
            heads = "\n".join(f"{h}:\n{vocab_text(h, ev)}" for h in ev.vocab)
            text = (
                f"You are {PERSPECTIVES[i % len(PERSPECTIVES)]}. Give one label for each of these dimensions:\n"
                f"{heads}\nAnswer with one JSON object with a key per dimension plus "
                '"confidence" (0..1) and "rationale".'
            )
            if debate_round:
                others = [f"- {a}: " + ", ".join(f"{h}={ans.get(h)}" for h in ev.vocab)
                          for a, ans in state["first"].items() if a != name]
                mine = ", ".join(f"{h}={state['first'].get(name, {}).get(h)}" for h in ev.vocab)
                text += (f"\n\nYour first answer: {mine}\nThe other annotators answered:\n"
                         + "\n".join(others) + "\nReconsider and give your final answer.")
            messages = evidence_messages(ev, text)
            role = f"debate_{i}" if debate_round else name
            answer = await ask(self.backend, messages, all_heads_schema(ev.vocab), settings, role=role)
            if answer.value is not None:
                out = answer.value.model_dump()
            else:  # tolerant per-head parse: one bad head does not void the others
                heads = parse_labels(answer.text, None, ev.vocab, answer.finish_reason)
                out = {**heads, "confidence": 0.0, "rationale": ""}
                out.update(invalid=True, error=answer.error, raw=answer.text[:2000])
            entry = {"node": f"debate_{i}" if debate_round else name, "input": summarise_parts(messages[1].content),
                     "output": {h: out.get(h) for h in (*ev.vocab, "confidence", "rationale")},
                     "revision_reason": None}
            if out.get("invalid"):
                entry.update(invalid=True, raw=out["raw"], error=out["error"])
            key = "final" if debate_round or not self.debate else "first"
            update: dict[str, Any] = {key: {name: out}, "trace": [entry]}
            if key == "final" and not self.debate:
                update["first"] = {name: out}
            return update

        return node

    async def _vote(self, state: VoteState) -> dict[str, Any]:
        ev = state["evidence"]
        answers = [state["final"][a] for a in self.agents if a in state["final"]]
        decision: dict[str, str | None] = {}
        counts: dict[str, dict[str, int]] = {}
        for head, labels in ev.vocab.items():
            decision[head], counts[head] = majority_vote(answers, head, list(labels))
        entry = {"node": "vote", "input": f"{len(answers)} agents", "output": {"decision": decision, "counts": counts},
                 "revision_reason": None}
        return {"decision": decision, "trace": [entry]}
