"""Text prompts of the zero-shot solver: Exp-CLIP's five prompt types, exactly.

Why exact: the reference rows of TASKS.md come from Exp-CLIP's `test.py`, whose prompts are defined in
zengqunzhao/Exp-CLIP `models/Text.py` (`FER_prompt_list`, `FER_prompt_type_list`). The ensembles are not
regular — sadness has its own five (two swapped templates) and the ten-prompt set uses adjectives and a
few per-class phrasings — so a "same templates for every class" approximation sends other texts.
Class names are Exp-CLIP's (`class_name` in `models/Text.py`: happiness, sadness, neutral, anger,
surprise, disgust, fear, contempt, anxiety, helplessness, disappointment; the 7/8/11-class datasets take
the first 7/8/11), which are the class names of `labels.py`.

Scoring (`test.py` `zero_shot_test`): every prompt's text feature is L2-normalised on its own;
`output = logit_scale * image @ text.T` over all class-major prompts, viewed as [N, C, P] and averaged over
P: the LOGITS are averaged (text embeddings are not averaged and re-normalised).

Prompt sets (`-S prompts=`), with Exp-CLIP's type number:
- `name` (type 1, "Class Name"): "<name>."
- `expression` (type 2, "An Expression of Name"): "an expression of <name>."
- `single` (type 3, "A Photo of A Face with An Expression of Name")
- `ensemble` (type 4, "Expression Ensemble Five"): `expression_ensemble_five`
- `ensemble10` (type 5, "Expression Ensemble Ten"): `expression_ensemble_ten`
"""

from __future__ import annotations

import hashlib
import json

from harness.core import HarnessError

# Exp-CLIP models/Text.py `expression_ensemble_five`: these five for every class but sadness.
_FIVE = (
    "an expression of {}.",
    "a photo of a face with an expression of {}.",
    "a photo radiating {} in a person.",
    "a photo showing someone immersed in {}.",
    "a photo capturing {} within an individual.",
)
# `expression_ensemble_ten`: the five above, then these (6th-10th); {adj} is the 10th prompt's wording.
_TEN_MORE = (
    "a photo of a face displaying {}.",
    "a photo of a person embodying {}.",
    "a good photo capturing someone's {}.",
    "a cropped photo emphasizing a face expressing {}.",
    "a clean photo showcasing a person's {adj} expression.",
)
_TEN_ADJ = {"neutral": "neutral", "anger": "angry", "surprise": "surprised", "disgust": "disgusted",
            "fear": "fearful", "contempt": "contemptuous", "anxiety": "anxious", "helplessness": "helpless",
            "disappointment": "disappointed"}
# The irregular classes of models/Text.py, listed in full.
_SADNESS_FIVE = (
    "an expression of sadness.",
    "a cropped photo emphasizing a face expressing sadness.",
    "a photo exuding sadness in a person.",
    "a photo showing someone immersed in sadness.",
    "a photo capturing sadness within an individual.",
)
_TEN_OVERRIDES = {
    "happiness": {5: "a photo of a face exuding happiness.", 9: "a clean photo showcasing a person's happiness."},
    "neutral": {7: "a good photo capturing someone's neutral state."},
}
_SADNESS_TEN = (*_SADNESS_FIVE, "a photo of a face displaying sadness.", "a photo of a person embodying sadness.",
                "a good photo capturing someone's sadness.", "a photo of a face with an expression of sadness.",
                "a clean photo showcasing a person's sadness.")

PROMPT_SET_NAMES = ("ensemble", "ensemble10", "single", "expression", "name")
EXPCLIP_CLASSES = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear", "contempt",
                   "anxiety", "helplessness", "disappointment")


def prompts_for(name: str, prompt_set: str) -> list[str]:
    """Exp-CLIP's prompts of one class in one prompt set."""
    if prompt_set == "name":
        return [f"{name}."]
    if prompt_set == "expression":
        return [f"an expression of {name}."]
    if prompt_set == "single":
        return [f"a photo of a face with an expression of {name}."]
    if prompt_set == "ensemble":
        return list(_SADNESS_FIVE) if name == "sadness" else [t.format(name) for t in _FIVE]
    if prompt_set == "ensemble10":
        if name == "sadness":
            return list(_SADNESS_TEN)
        if name not in _TEN_ADJ and name not in _TEN_OVERRIDES:
            raise HarnessError(f"prompts=ensemble10 has no prompts for class {name!r} (Exp-CLIP classes: "
                               f"{', '.join(EXPCLIP_CLASSES)})")
        texts = [t.format(name) for t in _FIVE] + [t.format(name, adj=_TEN_ADJ.get(name, name)) for t in _TEN_MORE]
        for i, text in _TEN_OVERRIDES.get(name, {}).items():
            texts[i] = text
        return texts
    raise HarnessError(f"unknown prompt set {prompt_set!r}; known: {', '.join(PROMPT_SET_NAMES)}")


def class_prompts(classes: tuple[str, ...] | list[str], prompt_set: str) -> list[list[str]]:
    """[class][prompt] texts (the same number of prompts per class in every set)."""
    return [prompts_for(c, prompt_set) for c in classes]


def prompts_digest(prompt_set: str) -> str:
    """Hash of every text the set sends, over Exp-CLIP's 11 classes."""
    texts = class_prompts(EXPCLIP_CLASSES, prompt_set)
    return hashlib.sha256(json.dumps([prompt_set, texts]).encode()).hexdigest()[:16]
