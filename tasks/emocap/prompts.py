"""Text prompts of the zero-shot solver.

Exp-CLIP's `test.py` scores each class with every prompt of its ensemble (`scale * image . text^T`)
and averages those logits per class; the "five" ensemble uses the templates below (its sadness set
swaps one template for "a cropped photo emphasizing a face expressing ..."; here every class gets the
same five, which keeps the set regular across 7/8/11-class datasets). `single` is Exp-CLIP's third
prompt type ("a photo of a face with an expression of <name>."), `name` its first (the bare class name).
"""

from __future__ import annotations

import hashlib
import json

PROMPT_SETS: dict[str, tuple[str, ...]] = {
    "ensemble": (
        "an expression of {}.",
        "a photo of a face with an expression of {}.",
        "a photo radiating {} in a person.",
        "a photo showing someone immersed in {}.",
        "a photo capturing {} within an individual.",
    ),
    "single": ("a photo of a face with an expression of {}.",),
    "name": ("{}.",),
}


def class_prompts(classes: tuple[str, ...] | list[str], prompt_set: str) -> list[list[str]]:
    """[class][template] prompt texts."""
    templates = PROMPT_SETS[prompt_set]
    return [[t.format(c) for t in templates] for c in classes]


def prompts_digest(prompt_set: str) -> str:
    return hashlib.sha256(json.dumps(PROMPT_SETS[prompt_set]).encode()).hexdigest()[:16]
