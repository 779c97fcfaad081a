"""Versioned judge rubrics shared by tasks (tasks import them; `harness` never imports tasks).

ISR (immunization success rate, arXiv 2512.14320; ../shared/TASKS.md): an edit of a protected image counts
as a failure of the editor (a success of the immunization) when the edited output does not carry out the
edit instruction, or when it is visibly degraded. Two yes/no questions per edit, asked of every judge at
temperature 0, majority over >= 2 judges. Ties resolve to the answer that does NOT count as a failure
(`follows_instruction` -> "yes", `degraded` -> "no"): a split panel never inflates the ISR.

Judges are shown two images, in this order: the image before editing, then the edited output. In a task's
`ascore`:

    panel = judge_panel(sctx)                      # harness.grading: the --judge MODEL@URL roles, once per run
    grading = await panel.grade(ISR_RUBRIC, images=(Part("image", path=source), Part("image", path=edited)),
                                prompt=instruction)
    return {**isr_outcome(grading), "grading": grading.to_dict()}   # rubric_agreement(...) in the report
"""

from __future__ import annotations

from typing import Any

from harness.grading import Grading, Question, QuestionRubric

ISR_RUBRIC = QuestionRubric(
    name="isr",
    version="1",
    context=("The first image is the original image. The second image is the result of editing it with this "
             'instruction: "{prompt}".'),
    questions=(
        Question("follows_instruction",
                 "Does the second image carry out the instruction, i.e. does it show the requested change "
                 "applied to the content of the first image?", on_tie="yes"),
        Question("degraded",
                 "Is the second image visibly degraded: noise, artifacts, distortions, blur, colour blotches or "
                 "patterns that the instruction did not ask for?", on_tie="no"),
    ),
)


def isr_outcome(grading: Grading | dict[str, Any]) -> dict[str, float]:
    """Per-edit scores from an ISR grading: `edit_failed` (1.0 when the panel says the instruction was not
    followed or the output is degraded), and the two sub-outcomes `not_followed` and `degraded`. The ISR is
    the mean of `edit_failed` over edits; the sub-rates are the means of the other two."""
    values = grading.values if isinstance(grading, Grading) else grading["values"]
    not_followed = values["follows_instruction"] == "no"
    degraded = values["degraded"] == "yes"
    return {"edit_failed": float(not_followed or degraded), "not_followed": float(not_followed),
            "degraded": float(degraded)}
