"""Model roles of a scorer: `--role NAME=MODEL[@BASE_URL]` and `--judge MODEL[@BASE_URL]`.

A role names a model the scoring needs (a face recogniser, an image editor, an MLLM judge). Each
role may have its own endpoint, since one `vllm serve` serves one model. Roles enter once at the
CLI and reach the task's `ascore` through the ScoreContext; their specs are part of the identity
of cached scores.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harness.core import HarnessError

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class RoleSpec:
    name: str  # "recognizer", "judge", "judge2", "editor"
    model: str  # a model name (served), a preset ("dlib"), or KIND:PATH ("arcface:/w/r100.onnx")
    base_url: str | None = None

    def identity(self) -> dict[str, str | None]:
        return {"model": self.model, "base_url": self.base_url}

    def __str__(self) -> str:
        return f"{self.model}@{self.base_url}" if self.base_url else self.model


def _split_model_url(text: str) -> tuple[str, str | None]:
    """`MODEL@URL` -> (MODEL, URL). Only an `@` followed by http(s):// separates, so model names and
    paths that contain `@` stay whole."""
    m = re.match(r"^(.*?)@(https?://\S+)$", text.strip())
    return (m.group(1), m.group(2)) if m else (text.strip(), None)


def parse_role(text: str) -> RoleSpec:
    if "=" not in text:
        raise HarnessError(f"--role {text!r}: expected NAME=MODEL[@BASE_URL], e.g. recognizer=dlib")
    name, spec = text.split("=", 1)
    name = name.strip()
    if not _NAME.match(name):
        raise HarnessError(f"--role {text!r}: role name must be lower-case letters, digits, - or _")
    model, url = _split_model_url(spec)
    if not model:
        raise HarnessError(f"--role {text!r}: no model given")
    return RoleSpec(name, model, url)


def build_roles(roles: Iterable[str] = (), judges: Iterable[str] = (), defaults: Mapping[str, str] | None = None,
                default_base_url: str | None = None) -> dict[str, RoleSpec]:
    """Roles by name: `--role` entries, then `--judge` entries as the next free of `judge`, `judge2`…, then the
    task's defaults for roles not given. A judge without its own URL uses `default_base_url`."""
    out: dict[str, RoleSpec] = {}
    for text in roles:
        spec = parse_role(text)
        if spec.name in out:
            raise HarnessError(f"--role {spec.name} given twice")
        out[spec.name] = spec
    for text in judges:
        k = 1
        while (name := "judge" if k == 1 else f"judge{k}") in out:
            k += 1
        model, url = _split_model_url(text)
        out[name] = RoleSpec(name, model, url or default_base_url)
    for name, model in (defaults or {}).items():
        out.setdefault(name, RoleSpec(name, model, None))
    return out


def judge_roles(roles: Mapping[str, RoleSpec]) -> list[RoleSpec]:
    """The judge panel: roles named judge, judge2, judge3… in order."""
    return sorted((r for n, r in roles.items() if re.fullmatch(r"judge\d*", n)),
                  key=lambda r: int(r.name[5:] or 1))
