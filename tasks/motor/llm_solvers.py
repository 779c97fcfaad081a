"""MLLM solvers for `motor`: one zero-shot MLLM, MOTOR-MAS and the general multi-agent vote.

All three talk to the model through `harness.models.make_backend` (any OpenAI-compatible server,
`hf:PATH` or `vllm:NAME`), send the clip as `frames` uniformly sampled frames plus the transcript,
and ask for structured answers at temperature 0 with the run's seed. An answer that does not name a
vocabulary label is an invalid prediction (`None` for that head), counted by the metrics; with
`--judge` the judges first try to extract the label from the free text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.label_judges import judge_extractor
from agents.llm import CallSettings, Extractor, ask, backend_from_context, labels_model, parse_labels
from agents.motor_mas import Evidence
from harness.core import RunContext, Sample, Solver, SolverOutput, Task
from harness.models.base import Message, ModelBackend, Part
from harness.registry import register_solver
from harness.structured import free_text_blocked
from tasks.motor.data import HEADS

SYSTEM_PROMPT = (
    "You annotate short video clips of students learning together in small groups. From what you can "
    "observe in the frames and the transcript, give one label for each dimension.\n{vocab}\n"
    'Answer with one JSON object: {{"behavior": ..., "cognition": ..., "emotion": ...}} using the labels '
    "exactly as written."
)


def vocab_prompt(sample: Sample) -> str:
    vocab, defs = sample.inputs["vocab"], sample.inputs.get("definitions") or {}
    blocks = []
    for head in HEADS:
        lines = [f"- {lab}" + (f": {defs[head][lab]}" if defs.get(head, {}).get(lab) else "") for lab in vocab[head]]
        blocks.append(f"{head}:\n" + "\n".join(lines))
    return "\n".join(blocks)


def evidence(sample: Sample, frames: int) -> Evidence:
    media: tuple[Part, ...] = ()
    if frames > 0 and sample.inputs.get("video"):
        media = (Part("video", path=str(sample.inputs["video"]), num_frames=frames),)
    return Evidence(
        media=media,
        transcript=str(sample.inputs.get("transcript") or ""),
        vocab={h: list(sample.inputs["vocab"][h]) for h in HEADS},
        definitions=sample.inputs.get("definitions") or {},
    )


class _BackendSolver(Solver):
    """Holds one backend and the sampling settings; subclasses define `solve`."""

    def __init__(self, backend: ModelBackend, settings: CallSettings, extractor: Extractor | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        self.backend, self.settings, self.extractor = backend, settings, extractor
        self.frames = int(options.get("frames", 8))

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> Solver:
        backend = backend_from_context(ctx, cls.name)
        settings = CallSettings("", ctx.seed, 0.0, int(options.get("max_tokens", 512)))
        return cls(backend, settings, judge_extractor(ctx), **{**cls.defaults(), **options})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"frames": 8}

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.extractor is not None and hasattr(self.extractor, "aclose"):
            await self.extractor.aclose()


@register_solver("mllm", tasks=("motor",), kind="mllm", description="zero-shot MLLM: frames + transcript -> 3 labels")
class MotorMLLMSolver(_BackendSolver):
    async def solve(self, sample: Sample) -> SolverOutput:
        ev = evidence(sample, self.frames)
        messages = [
            Message.text("system", SYSTEM_PROMPT.format(vocab=vocab_prompt(sample))),
            Message("user", (*ev.media, Part("text", text=f"Transcript:\n{ev.transcript or '(none)'}"))),
        ]
        answer = await ask(self.backend, messages, labels_model("MotorLabels", ev.vocab), self.settings)
        info: dict[str, Any] = {"raw": answer.text[:2000]}
        if answer.value is not None:
            prediction: dict[str, str | None] = {h: getattr(answer.value, h) for h in HEADS}
            info["parsed_by"] = "schema"
        else:
            prediction = parse_labels(answer.text, None, ev.vocab, answer.finish_reason)
            info.update(parsed_by="text", parse_error=answer.error)
            if answer.truncated:
                info["truncated"] = True
            elif free_text_blocked(answer.text) is None:  # judges never read JSON-looking or cut answers
                await self._extract_missing(answer.text, prediction, ev.vocab, info)
        invalid = [h for h in HEADS if prediction[h] is None]
        if invalid:
            info.update(invalid=True, invalid_heads=invalid)
        return SolverOutput(prediction, info)

    async def _extract_missing(self, text: str, prediction: dict[str, str | None],
                               vocab: dict[str, list[str]], info: dict[str, Any]) -> None:
        if self.extractor is None:
            return
        judged = {}
        for head in HEADS:
            if prediction[head] is None:
                prediction[head], judged[head] = await self.extractor(text, head, vocab[head])
        if judged:
            info["judge"] = judged


@register_solver("motor-mas", tasks=("motor",), kind="agent",
                 description="MOTOR-MAS: behavior -> cognition -> emotion agents + consistency coordinator (LangGraph)")
class MotorMASSolver(_BackendSolver):
    def __init__(self, backend: ModelBackend, settings: CallSettings, extractor: Extractor | None = None,
                 **options: Any) -> None:
        super().__init__(backend, settings, extractor, **options)
        from agents.motor_mas import MotorMAS

        self.graph = MotorMAS(backend, settings, heads=HEADS,
                              max_revisions=int(options.get("max_revisions", 2)), extractor=extractor)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"frames": 8, "max_revisions": 2}

    async def solve(self, sample: Sample) -> SolverOutput:
        state = await self.graph.run(evidence(sample, self.frames))
        answers = state["answers"]
        prediction = {h: answers.get(h, {}).get("label") for h in HEADS}
        info: dict[str, Any] = {
            "trace": state["trace"],
            "revisions": state["revisions"],
            "consistent": state.get("consistent"),
            "confidence": {h: answers.get(h, {}).get("confidence") for h in HEADS},
        }
        invalid = [h for h in HEADS if prediction[h] is None]
        if invalid:
            info.update(invalid=True, invalid_heads=invalid)
        return SolverOutput(prediction, info)


@register_solver("mas-vote", tasks=("motor",), kind="agent",
                 description="general multi-agent baseline: N independent agents (+ debate) and a majority vote")
class VoteSolver(_BackendSolver):
    def __init__(self, backend: ModelBackend, settings: CallSettings, extractor: Extractor | None = None,
                 **options: Any) -> None:
        super().__init__(backend, settings, extractor, **options)
        from agents.vote import VoteMAS

        self.graph = VoteMAS(backend, settings, n_agents=int(options.get("n_agents", 3)),
                             debate=_as_bool(options.get("debate", False)))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"frames": 8, "n_agents": 3, "debate": False}

    async def solve(self, sample: Sample) -> SolverOutput:
        state = await self.graph.run(evidence(sample, self.frames))
        prediction = dict(state["decision"])
        info: dict[str, Any] = {"trace": state["trace"]}
        invalid = [h for h in HEADS if prediction.get(h) is None]
        if invalid:
            info.update(invalid=True, invalid_heads=invalid)
        return SolverOutput(prediction, info)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


__all__: Sequence[str] = ["MotorMASSolver", "MotorMLLMSolver", "VoteSolver", "evidence", "vocab_prompt"]
