"""An example solver living outside the harness: flags an utterance as sarcastic when it holds a cue.

Install it (`pip install -e examples/harness-example-solver`) and it appears in
`harness solvers --task sarcasm`; run it with `harness run --task sarcasm --solver cue-words`.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from harness.core import Sample, Solver, SolverOptions, SolverOutput
from harness.registry import register_solver

DEFAULT_CUES = ("oh", "sure", "really", "great", "wow", "totally", "obviously", "yeah")


@register_solver("cue-words", tasks=("sarcasm",), kind="classical",
                 description="sarcastic when the utterance contains a cue word (example plugin)")
class CueWordSolver(Solver):
    class Options(SolverOptions):
        cues: str = Field(",".join(DEFAULT_CUES), description="comma-separated cue words (case-insensitive)")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        words = [w.strip().lower() for w in self.options["cues"].split(",") if w.strip()]
        self.pattern = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)

    async def solve(self, sample: Sample) -> SolverOutput:
        match = self.pattern.search(sample.inputs["utterance"])
        return SolverOutput(prediction=match is not None, info={"cue": match.group(0) if match else None})
