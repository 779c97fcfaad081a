"""A tiny task for testing the runner without real data: samples are numbers, targets their parity.

Data folder: `items.json` = [{"id": "s0", "x": 0, "subject": "a"}, ...]. Solvers: `echo` predicts the
parity (right), `flaky` fails on chosen ids, `slow` sleeps, `constant` predicts a fixed label.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from pydantic import Field

from harness.core import DataError, Fold, Metric, Sample, Solver, SolverOptions, Task
from harness.metrics import accuracy
from harness.registry import register_solver, register_task


def write_items(folder: Path, n: int, subjects: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    items = [{"id": f"s{i}", "x": i, "subject": f"p{i % subjects}"} for i in range(n)]
    (folder / "items.json").write_text(json.dumps(items))
    return folder


def run_settings(tmp_path: Path, data: Path, **kw):  # -> harness.runner.RunSettings
    """Settings of a quiet test run into tmp_path/runs (no board unless `db_url` is given)."""
    from harness.runner import RunSettings

    kw.setdefault("db_url", None)
    return RunSettings(data=data, out_dir=tmp_path / "runs", show_progress=False, **kw)


def _acc(records):
    return accuracy([r.target for r in records], [r.prediction for r in records])


@register_task
class ToyTask(Task):
    name = "toy"
    description = "parity of integers"
    protocols = {"all": "one fold", "2fold": "two folds: even / odd positions"}
    default_protocol = "all"
    default_solver = "echo"
    data_folder = "toy"
    cluster_key = "subject"

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        path = data_dir / "items.json"
        try:
            items = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: {exc}") from exc
        samples = [Sample(it["id"], {"x": it["x"]}, it["x"] % 2 == 0, {"subject": it["subject"]}) for it in items]
        if protocol == "2fold":
            return [Fold("f1", samples[0::2], samples[1::2]), Fold("f2", samples[1::2], samples[0::2])]
        return [Fold("all", samples)]

    def score(self, sample, prediction):
        return {"correct": float(prediction == sample.target)}

    def metrics(self, protocol):
        return [Metric("accuracy", _acc, per_fold=protocol == "2fold", scale=100)]


@register_solver("echo", tasks=("toy",))
class EchoSolver(Solver):
    """Predicts the right parity."""

    async def solve(self, sample):
        return sample.inputs["x"] % 2 == 0


@register_solver("constant", tasks=("toy",))
class ConstantSolver(Solver):
    """Always predicts `label` (default True)."""

    class Options(SolverOptions):
        label: bool = Field(True, description="the label predicted for every sample")

    async def solve(self, sample):
        return self.options["label"]


@register_solver("flaky", tasks=("toy",))
class FlakySolver(Solver):
    """Raises for ids listed in the file named by option `fail_file` (so a test can change it)."""

    class Options(SolverOptions):
        fail_file: str | None = Field(None, description="JSON list of sample ids to fail on")

    async def solve(self, sample):
        path = self.options["fail_file"]
        if path and os.path.exists(path) and sample.id in json.loads(Path(path).read_text()):
            raise RuntimeError(f"boom on {sample.id}")
        return sample.inputs["x"] % 2 == 0


@register_solver("slow", tasks=("toy",))
class SlowSolver(Solver):
    """Right answer after `delay` seconds (blocking `sync` seconds of CPU too, if set)."""

    class Options(SolverOptions):
        delay: float = Field(0.0, ge=0, description="seconds to await before answering")
        sync: float = Field(0.0, ge=0, description="seconds to block the event loop (time.sleep) first")

    async def solve(self, sample):
        if self.options["sync"]:
            time.sleep(self.options["sync"])
        await asyncio.sleep(self.options["delay"])
        return sample.inputs["x"] % 2 == 0


@register_solver("unserialisable", tasks=("toy",))
class UnserialisableSolver(Solver):
    """Returns an object JSON cannot hold for odd numbers, a numpy bool for even ones."""

    async def solve(self, sample):
        import numpy as np

        return object() if sample.inputs["x"] % 2 else np.bool_(True)
