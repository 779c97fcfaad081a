"""Name -> task / solver lookup.

Built-in and third-party components are found the same way: a package declares entry points
(`harness.tasks`: name -> Task class; `harness.solvers`: name -> module or object whose import
registers solvers with `@register_solver`). Entry points are loaded lazily, by name, so start-up
imports only the task that runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

from harness.core import HarnessError, RunContext, Solver, Task

TASK_GROUP = "harness.tasks"
SOLVER_GROUP = "harness.solvers"
ANY_TASK = "*"

SolverFactory = Callable[..., Solver]  # (ctx, task, **options) -> Solver


@dataclass(frozen=True)
class SolverEntry:
    name: str
    tasks: tuple[str, ...]  # ("*",) = usable for any task
    factory: SolverFactory
    description: str
    kind: str  # classical | mllm | agent | vision | transform
    solver_cls: type[Solver] | None = None  # for the options table of `harness solvers`


_tasks: dict[str, type[Task]] = {}
_solvers: dict[tuple[str, str], SolverEntry] = {}
_plugins_loaded = False

S = TypeVar("S", bound=type[Solver])
T = TypeVar("T", bound=type[Task])


def register_task(cls: T) -> T:
    """Class decorator: make a Task findable by its `name` (for tasks outside entry points)."""
    _tasks[cls.name] = cls
    return cls


def register_solver(
    name: str, *, tasks: Iterable[str] = (ANY_TASK,), kind: str = "classical", description: str = ""
) -> Callable[[S], S]:
    """Class decorator: register a Solver subclass under `name` for the given task names."""

    def wrap(cls: S) -> S:
        cls.name = name
        doc = description or _summary(cls.__doc__)
        for task in tasks:
            _solvers[(task, name)] = SolverEntry(name, tuple(tasks), cls.create, doc, kind, cls)
        return cls

    return wrap


def _summary(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph."""
    para = " ".join((doc or "").strip().split("\n\n")[0].split())
    end = para.find(". ")
    return para if end < 0 else para[: end + 1]


def _entry_points(group: str) -> list[Any]:
    return list(entry_points(group=group))


def task_names() -> list[str]:
    return sorted({ep.name for ep in _entry_points(TASK_GROUP)} | set(_tasks))


def get_task(name: str) -> Task:
    if name not in _tasks:
        for ep in _entry_points(TASK_GROUP):
            if ep.name == name:
                _tasks[name] = ep.load()
                break
        else:
            raise HarnessError(f"unknown task {name!r}; known tasks: {', '.join(task_names()) or 'none'}")
    return _tasks[name]()


def load_solver_plugins() -> None:
    """Import every `harness.solvers` entry point once (their imports register solvers)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in _entry_points(SOLVER_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not break the harness
            import warnings

            warnings.warn(f"solver plugin {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)


def solvers_for(task: str) -> list[SolverEntry]:
    get_task(task)  # importing a task registers its own solvers
    load_solver_plugins()
    found = {e.name: e for (t, _), e in _solvers.items() if t == ANY_TASK}
    found.update({e.name: e for (t, _), e in _solvers.items() if t == task})
    return sorted(found.values(), key=lambda e: e.name)


def make_solver(task: Task, name: str, ctx: RunContext, options: dict[str, Any] | None = None) -> Solver:
    entry = _solvers.get((task.name, name)) or _solvers.get((ANY_TASK, name))
    if entry is None:
        load_solver_plugins()
        entry = _solvers.get((task.name, name)) or _solvers.get((ANY_TASK, name))
    if entry is None:
        known = ", ".join(e.name for e in solvers_for(task.name))
        raise HarnessError(f"no solver {name!r} for task {task.name!r}; available: {known}")
    from pydantic import ValidationError

    try:
        return entry.factory(ctx, task, **(options or {}))
    except ValidationError as exc:  # validated outside `Solver.__init__`
        if entry.solver_cls is None:
            raise HarnessError(f"solver {name!r}: bad options {options}: {exc}") from None
        from harness.options import validation_message

        raise HarnessError(validation_message(name, entry.solver_cls.Options, dict(options or {}), exc)) from None
    except TypeError as exc:
        raise HarnessError(f"solver {name!r}: bad options {options}: {exc}") from exc
