"""A sealed task (`Task.sealed`): its public data has no test targets, `harness run` writes predictions
without scores or metrics (and no leaderboard row), `harness score` refuses, and only a board holding
the labelled copy of the data scores the run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from harness import registry
from harness.board.client import build_payload
from harness.core import DataError, Fold, HarnessError, Metric, Sample, Solver, Task
from harness.leaderboard import Leaderboard
from harness.registry import register_solver, register_task
from harness.runner import RunConfig, RunSettings, run
from harness.scoring import score_run
from tests.board_helpers import auth, create_app, settings


class SealedToyTask(Task):
    """Twelve items x = 0..11; the label (x % 3 == 0) is only in the board's copy (labels.json)."""

    name = "boardsealed"
    protocols = {"all": "one fold of twelve items"}
    default_protocol = "all"
    default_solver = "parity"
    data_folder = "boardsealed"
    sealed = True

    def resolve_data(self, data: Path | None) -> Path:
        if data is None or not (data / "inputs.json").is_file():
            raise DataError(f"{data}: no inputs.json")
        return data

    def fingerprint(self, data_dir: Path) -> str:  # the inputs only: public and labelled copies agree
        return hashlib.sha256((data_dir / "inputs.json").read_bytes()).hexdigest()[:16]

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        items = json.loads((data_dir / "inputs.json").read_text())
        labels_file = data_dir / "labels.json"
        labels = json.loads(labels_file.read_text()) if labels_file.is_file() else {}
        return [Fold("all", [Sample(i["id"], {"x": i["x"]}, labels.get(i["id"])) for i in items])]

    def score(self, sample: Sample, prediction: object) -> dict:
        if sample.target is None:
            raise HarnessError("no target")
        return {"correct": float(prediction == sample.target)}

    def metrics(self, protocol: str) -> list[Metric]:
        return [Metric("accuracy", mean_of="correct")]


class ParitySolver(Solver):
    """x is even."""

    async def solve(self, sample: Sample) -> bool:
        return sample.inputs["x"] % 2 == 0


@pytest.fixture
def sealed_data(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    register_task(SealedToyTask)
    register_solver("parity", tasks=("boardsealed",))(ParitySolver)
    items = [{"id": f"i{x}", "x": x} for x in range(12)]
    public = tmp_path / "public" / "boardsealed"
    server_root = tmp_path / "server"
    for folder in (public, server_root / "boardsealed"):
        folder.mkdir(parents=True)
        (folder / "inputs.json").write_text(json.dumps(items))
    (server_root / "boardsealed" / "labels.json").write_text(json.dumps({f"i{x}": x % 3 == 0 for x in range(12)}))
    yield public, server_root
    registry._tasks.pop("boardsealed", None)
    registry._solvers.pop(("boardsealed", "parity"), None)


def test_a_sealed_run_has_predictions_only_and_the_board_scores_it(sealed_data: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    public, server_root = sealed_data
    local_db = f"sqlite:///{tmp_path / 'local.sqlite'}"
    result = run(RunConfig(task="boardsealed", solver="parity", n_boot=50),
                 RunSettings(data=public, out_dir=tmp_path / "runs", db_url=local_db, show_progress=False))
    assert result.metrics == {} and result.n_errors == 0
    lines = [json.loads(x) for x in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(d["scores"] == {} and d["target"] is None for d in lines) and len(lines) == 12
    assert json.loads((result.run_dir / "metrics.json").read_text())["metrics"] == {}
    assert Leaderboard(local_db).measured("boardsealed") == []
    with pytest.raises(HarnessError, match="sealed"):
        score_run(result.run_dir)

    client = TestClient(create_app(settings(f"sqlite:///{tmp_path / 'board.sqlite'}", data_root=server_root)))
    r = client.post("/api/submit", content=build_payload(result.run_dir), headers=auth())
    assert r.status_code == 201, r.text
    # parity vs x % 3 == 0 on x = 0..11: right at x = 0, 1, 5, 6, 7, 11 -> 6 of 12
    assert r.json()["metrics"]["accuracy"]["value"] == pytest.approx(0.5)
    page = client.get("/task/boardsealed").text
    assert "sealed" in page and "alice (1)" in page
