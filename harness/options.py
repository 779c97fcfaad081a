"""Typed solver options: each solver declares its `-S` knobs as a pydantic model.

Why a model and not `**kwargs`: a typo (`-S frame=4`) must be refused instead of silently ignored,
a value from the command line must become the declared type (`-S scale=false` is `False`, not the
truthy string "false"), and the cache key must hash the canonical config (defaults filled in), so
writing a default out gives the same identity as leaving it out. The same declaration prints the
options table of `harness solvers --task T`.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SolverOptions(BaseModel):
    """Base of every solver's options: unknown keys are refused and values are frozen.

    Numbers given for a string field are accepted as strings (`-S prompt=3` is read as a literal
    first by the CLI). Subclass it with one `Field(default, description=...)` per option.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class GenerationOptions(SolverOptions):
    """The sampling settings of a model solver; they go into every request it sends and so into its
    identity. `seed` None is filled from --seed when the solver is created."""

    temperature: float = Field(0.0, ge=0, description="sampling temperature (0: greedy)")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling mass (None: the server's default)")
    max_tokens: int = Field(512, gt=0, description="most tokens one answer may take")
    seed: int | None = Field(None, description="request seed (default: --seed)")
    video: Literal["frames", "video", "file"] = Field(
        "frames", description="videos as ordered frames with timestamps, one video_url of frames (vLLM), or a "
        "file:// video_url (vLLM --allowed-local-media-path)")
    epochs: int = Field(1, ge=1, description="solve each sample K times (seeds seed..seed+K-1); the report gives "
                        "each metric's mean and spread over epochs")


@dataclass(frozen=True)
class OptionRow:
    """One option as shown to a user: name, type, default (JSON) and one-line help."""

    name: str
    type: str
    default: Any
    help: str
    required: bool = False


def type_name(tp: Any) -> str:
    """A short, readable name of a field's annotation (`int`, `'svm' | 'logreg'`, `list[float] | None`)."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "None"
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def option_rows(options: type[BaseModel]) -> list[OptionRow]:
    """The declared options in declaration order."""
    rows = []
    for name, info in options.model_fields.items():
        required = info.is_required()
        default = None if required else info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        rows.append(OptionRow(name, type_name(info.annotation), default, info.description or "", required))
    return rows


def describe_options(options: type[BaseModel]) -> str:
    """Each option on its own line: `name: type = default  help`."""
    rows = option_rows(options)
    if not rows:
        return "  (this solver takes no options)"
    return "\n".join(
        f"  {r.name}: {r.type} = {'(required)' if r.required else repr(r.default)}" + (f"  {r.help}" if r.help else "")
        for r in rows
    )


def validation_message(solver: str, options: type[BaseModel], given: dict[str, Any], exc: ValidationError) -> str:
    """A user-facing message for refused options: each bad key/value, then the valid options."""
    valid = list(options.model_fields)
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err.get("loc", ())) or "?"
        top = str(err.get("loc", ("?",))[0]) if err.get("loc") else key
        if err.get("type") == "extra_forbidden":
            close = difflib.get_close_matches(top, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown option {top!r}{hint}")
        else:
            value = given.get(top, err.get("input"))
            problems.append(f"option {key}={value!r}: {err.get('msg', 'invalid value')}")
    return f"solver {solver!r}: " + "; ".join(problems) + "\nvalid options:\n" + describe_options(options)


__all__ = [
    "GenerationOptions", "OptionRow", "SolverOptions", "describe_options", "option_rows", "type_name",
    "validation_message",
]
