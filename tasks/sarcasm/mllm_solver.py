"""Zero-shot MLLM solver for `sarcasm` (`--model M [--base-url URL]`).

The prompt holds the utterance, with its dialogue context (`context`, default on) and speaker names
(`speaker`, default on); when the sample has a clip (`video` in its inputs) and `frames` > 0, that
many uniformly sampled frames go with it. The model is asked for ``{"sarcastic": true|false}``
(structured output, temperature 0, the run's seed); a free-text answer is read by the tolerant
parser ("sarcastic" / "not sarcastic", then a bare yes/no), then by the `--judge` models if given; an
answer cut at max_tokens or a JSON answer that does not validate is never read as free text.
Anything still unreadable is an invalid prediction (`None`, info ``{"invalid": true, "raw": ...}``),
which the metrics count as wrong; it is never mapped to a class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from agents.label_judges import judge_extractor
from agents.llm import CallSettings, Extractor, ask, backend_from_context
from harness.core import RunContext, Sample, Solver, SolverOutput, Task, digest_texts
from harness.epochs import solve_epochs
from harness.models.base import Message, ModelBackend, Part
from harness.options import GenerationOptions
from harness.registry import register_solver
from harness.structured import Parsed, free_text_blocked, match_label

SYSTEM_PROMPT = (
    "You detect sarcasm in TV-show dialogue. An utterance is sarcastic when the speaker means something "
    "different from, often the opposite of, what the words say, to mock, tease or express irony. "
    "Decide whether the final utterance is sarcastic. "
    'Answer with one JSON object: {"sarcastic": true} or {"sarcastic": false}.'
)
CLASS_WORDS: dict[str, bool] = {"sarcastic": True, "not sarcastic": False, "non sarcastic": False}
YES_NO: dict[str, bool] = {"yes": True, "no": False}
JUDGE_LABELS: tuple[str, str] = ("sarcastic", "not sarcastic")
CONTEXT_HEADER, UTTERANCE_HEADER = "Context:\n", "Utterance:\n"


class SarcasmAnswer(BaseModel):
    sarcastic: bool


def read_free_text(text: str) -> bool | None:
    """A class from free text: a sarcastic / not-sarcastic wording first, else a bare yes/no."""
    for table in (CLASS_WORDS, YES_NO):
        result = match_label(text, list(table))
        if isinstance(result, Parsed):
            return table[result.value]
    return None


def dialogue_text(sample: Sample, *, context: bool, speaker: bool) -> str:
    inputs = sample.inputs

    def line(who: Any, said: Any) -> str:
        return f"{who}: {said}" if speaker and who else str(said)

    parts = []
    lines = list(inputs.get("context") or []) if context else []
    if lines:
        speakers = list(inputs.get("context_speakers") or [])
        speakers += [""] * (len(lines) - len(speakers))
        parts.append(CONTEXT_HEADER + "\n".join(line(s, u) for s, u in zip(speakers, lines, strict=False)))
    parts.append(UTTERANCE_HEADER + line(inputs.get("speaker"), inputs.get("utterance", "")))
    return "\n\n".join(parts)


class SarcasmMLLMOptions(GenerationOptions):
    context: bool = Field(True, description="include the dialogue context before the utterance")
    speaker: bool = Field(True, description="prefix each line with its speaker's name")
    frames: int = Field(8, ge=0, description="video frames sampled uniformly from the clip (0: text only)")
    max_tokens: int = Field(256, gt=0, description="most tokens one answer may take")


@register_solver("mllm", tasks=("sarcasm",), kind="mllm",
                 description="zero-shot MLLM: utterance (+ context, speaker, frames) -> sarcastic?")
class SarcasmMLLMSolver(Solver):
    Options = SarcasmMLLMOptions
    # 2: negated free-text labels are invalid (harness.structured.match_label); 3: a judge panel with a
    # judge down gives no label (quorum). Cached results are re-read.
    version = "3"

    def __init__(self, backend: ModelBackend, extractor: Extractor | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.backend, self.extractor = backend, extractor
        self.settings = dataclasses.replace(CallSettings.from_options(self.options), video_input=self.options["video"])

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> Solver:
        options = {**options, "seed": options["seed"] if options.get("seed") is not None else ctx.seed}
        cls.validate_options(options)  # a typo is refused before a backend is built
        backend = backend_from_context(ctx, cls.name)
        return cls(backend, judge_extractor(ctx), **options)

    def prompt_digest(self) -> str:
        return digest_texts(SYSTEM_PROMPT, CONTEXT_HEADER, UTTERANCE_HEADER, SarcasmAnswer.model_json_schema(),
                            CLASS_WORDS, YES_NO, JUDGE_LABELS)

    def messages(self, sample: Sample) -> list[Message]:
        media: tuple[Part, ...] = ()
        if self.options["frames"] > 0 and sample.inputs.get("video"):
            media = (Part("video", path=str(sample.inputs["video"]), num_frames=self.options["frames"]),)
        text = dialogue_text(sample, context=self.options["context"], speaker=self.options["speaker"])
        return [Message.text("system", SYSTEM_PROMPT), Message("user", (*media, Part("text", text=text)))]

    async def solve(self, sample: Sample) -> SolverOutput:
        """One sample, `-S epochs` times with seeds seed, seed+1, ... (epoch 0's answer is the prediction)."""
        return await solve_epochs(lambda seed: self.solve_once(sample, dataclasses.replace(self.settings, seed=seed)),
                                  self.options["epochs"], self.settings.seed)

    async def solve_once(self, sample: Sample, settings: CallSettings) -> SolverOutput:
        answer = await ask(self.backend, self.messages(sample), SarcasmAnswer, settings, role="mllm")
        info: dict[str, Any] = {"raw": answer.text[:2000]}
        if answer.value is not None:
            return SolverOutput(answer.value.sarcastic, {**info, "parsed_by": "schema"})
        blocked = free_text_blocked(answer.text, answer.finish_reason)
        if blocked is not None:  # cut at max_tokens, or JSON that did not validate: invalid, never a class
            info.update(invalid=True, parsed_by=None, parse_error=f"{blocked} ({answer.error})",
                        **({"truncated": True} if answer.truncated else {}))
            return SolverOutput(None, info)
        label = read_free_text(answer.text)
        info.update(parsed_by="text", parse_error=answer.error)
        if label is None and self.extractor is not None:
            judged, info["judge"] = await self.extractor(answer.text, "sarcastic", JUDGE_LABELS)
            label = None if judged is None else judged == "sarcastic"
            info["parsed_by"] = "judge"
        if label is None:
            info["invalid"] = True
        return SolverOutput(label, info)

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.extractor is not None and hasattr(self.extractor, "aclose"):
            await self.extractor.aclose()


__all__: Sequence[str] = ["SarcasmMLLMSolver", "dialogue_text", "read_free_text"]
