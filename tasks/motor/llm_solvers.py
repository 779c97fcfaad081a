"""MLLM solvers for `motor`: one zero-shot MLLM, MOTOR-MAS and the general multi-agent vote.

All three talk to the model through `harness.models.make_backend` (any OpenAI-compatible server,
`hf:PATH` or `vllm:NAME`), send the clip as `frames` uniformly sampled frames (`-S video=`: ordered frames
with timestamps, or one video part), the clip's audio track as an `input_audio` part with `-S audio=true`
(for models that take audio; otherwise the transcript is what they hear), and the transcript, and ask for
structured answers at the solver's temperature with the run's seed. All three get the same label names
and definitions, read from the data's vocabulary. An answer that does not name a vocabulary label is an
invalid prediction (`None` for that head), counted by the metrics; with `--judge` the judges first try
to extract the label from the free text. `-S epochs=K` solves each clip K times (`harness.epochs`).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from agents.label_judges import judge_extractor
from agents.llm import CallSettings, Extractor, ask, backend_from_context, labels_model, parse_labels
from agents.motor_mas import Evidence
from harness.core import RunContext, Sample, Solver, SolverOutput, Task, digest_texts, source_texts
from harness.epochs import solve_epochs
from harness.models.base import Message, ModelBackend, Part
from harness.options import GenerationOptions
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


def evidence(sample: Sample, frames: int, audio: bool = False) -> Evidence:
    media: tuple[Part, ...] = ()
    if frames > 0 and sample.inputs.get("video"):
        media = (Part("video", path=str(sample.inputs["video"]), num_frames=frames),)
    if audio and sample.inputs.get("audio"):
        media = (*media, Part("audio", path=str(sample.inputs["audio"])))
    return Evidence(
        media=media,
        transcript=str(sample.inputs.get("transcript") or ""),
        vocab={h: list(sample.inputs["vocab"][h]) for h in HEADS},
        definitions=sample.inputs.get("definitions") or {},
    )


class MotorMLLMOptions(GenerationOptions):
    frames: int = Field(8, ge=0, description="video frames sampled uniformly from the clip (0: transcript only)")
    audio: bool = Field(False, description="send the clip's audio track as an input_audio part (audio models)")


class MotorMASOptions(MotorMLLMOptions):
    max_revisions: int = Field(2, ge=0, description="most heads the coordinator may send back per clip")


class VoteOptions(MotorMLLMOptions):
    temperature: float = Field(0.7, ge=0, description="sampling temperature of every agent (0 makes the vote moot)")
    n_agents: int = Field(3, ge=1, description="independent agents that vote")
    debate: bool = Field(False, description="one debate round: each agent sees the others' first answers")


class _BackendSolver(Solver):
    """Holds one backend and the sampling settings (from the options); subclasses define `solve`."""

    Options = MotorMLLMOptions
    # 2: negated free-text labels are invalid (harness.structured.match_label); 3: a judge panel with a
    # judge down gives no label (quorum). Cached results are re-read.
    version = "3"

    def __init__(self, backend: ModelBackend, extractor: Extractor | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.backend, self.extractor = backend, extractor
        self.settings = dataclasses.replace(CallSettings.from_options(self.options), video_input=self.options["video"])
        self.frames: int = self.options["frames"]

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> Solver:
        options = {**options, "seed": options["seed"] if options.get("seed") is not None else ctx.seed}
        cls.validate_options(options)  # a typo is refused before a backend is built
        backend = backend_from_context(ctx, cls.name)
        return cls(backend, judge_extractor(ctx), **options)

    def prompt_digest(self) -> str:
        import agents.label_judges
        import agents.llm

        judges = source_texts(agents.label_judges) if self.extractor is not None else []
        return digest_texts(SYSTEM_PROMPT, *source_texts(vocab_prompt, evidence, agents.llm), *self.graph_sources(),
                            *judges)

    def graph_sources(self) -> list[str]:
        """The source of the code that writes this solver's prompts beyond SYSTEM_PROMPT."""
        return source_texts(type(self).solve_once)

    def evidence(self, sample: Sample) -> Evidence:
        return evidence(sample, self.frames, self.options["audio"])

    async def solve(self, sample: Sample) -> SolverOutput:
        """One clip, `epochs` times with seeds seed, seed+1, ... (epoch 0's answer is the prediction)."""
        return await solve_epochs(lambda seed: self.solve_once(sample, dataclasses.replace(self.settings, seed=seed)),
                                  self.options["epochs"], self.settings.seed)

    @abc.abstractmethod
    async def solve_once(self, sample: Sample, settings: CallSettings) -> SolverOutput:
        """One answer for the clip with these sampling settings (one epoch)."""

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.extractor is not None and hasattr(self.extractor, "aclose"):
            await self.extractor.aclose()


@register_solver("mllm", tasks=("motor",), kind="mllm", description="zero-shot MLLM: frames + transcript -> 3 labels")
class MotorMLLMSolver(_BackendSolver):
    async def solve_once(self, sample: Sample, settings: CallSettings) -> SolverOutput:
        ev = self.evidence(sample)
        messages = [
            Message.text("system", SYSTEM_PROMPT.format(vocab=vocab_prompt(sample))),
            Message("user", (*ev.media, Part("text", text=f"Transcript:\n{ev.transcript or '(none)'}"))),
        ]
        answer = await ask(self.backend, messages, labels_model("MotorLabels", ev.vocab), settings, role="mllm")
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
    Options = MotorMASOptions
    version = "4"  # 3: a head's valid JSON label counts despite another bad field (as mllm); 4: judge quorum

    def __init__(self, backend: ModelBackend, extractor: Extractor | None = None, **options: Any) -> None:
        super().__init__(backend, extractor, **options)
        from agents.motor_mas import MotorMAS

        self.graph = MotorMAS(backend, self.settings, heads=HEADS, max_revisions=self.options["max_revisions"],
                              extractor=extractor)

    def graph_sources(self) -> list[str]:
        import agents.motor_mas

        return source_texts(agents.motor_mas)

    async def solve_once(self, sample: Sample, settings: CallSettings) -> SolverOutput:
        state = await self.graph.run(self.evidence(sample), settings)
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
    Options = VoteOptions

    def __init__(self, backend: ModelBackend, extractor: Extractor | None = None, **options: Any) -> None:
        super().__init__(backend, extractor, **options)
        from agents.vote import VoteMAS

        self.graph = VoteMAS(backend, self.settings, n_agents=self.options["n_agents"], debate=self.options["debate"])

    def graph_sources(self) -> list[str]:
        import agents.vote

        return source_texts(agents.vote)

    async def solve_once(self, sample: Sample, settings: CallSettings) -> SolverOutput:
        state = await self.graph.run(self.evidence(sample), settings)
        prediction = dict(state["decision"])
        info: dict[str, Any] = {"trace": state["trace"]}
        invalid = [h for h in HEADS if prediction.get(h) is None]
        if invalid:
            info.update(invalid=True, invalid_heads=invalid)
        return SolverOutput(prediction, info)


__all__: Sequence[str] = ["MotorMASSolver", "MotorMLLMSolver", "VoteSolver", "evidence", "vocab_prompt"]
