"""`harness show` and `harness compare` on a corrupt run folder name the broken file (exit 2, no
traceback) (issue 9, item 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

MANIFEST = {"run_id": "toy-echo-1", "status": "finished", "config": {"task": "sarcasm", "protocol": "speaker-dependent",
                                                                     "solver": "echo"}}
SAMPLE = {"sample_id": "s0", "fold": "all", "target": True, "prediction": True, "scores": {}, "groups": {},
          "info": {}, "error": None, "latency_s": 0.0}


def make_run(out: Path, run_id: str) -> Path:
    run = out / run_id
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({**MANIFEST, "run_id": run_id}))
    (run / "samples.jsonl").write_text(json.dumps({"cached": False, **SAMPLE}) + "\n")
    (run / "metrics.json").write_text(json.dumps({"metrics": {}, "n_samples": 1, "n_errors": 0, "n_cached": 0}))
    return run


CORRUPTIONS = {
    "manifest.json": ['{"run_id": "x", "conf', "", "[1, 2]", '{"run_id": "x"}', '{"run_id": "x", "config": 3}'],
    "samples.jsonl": ['{"sample_id": "s0", "fold": ', '{"sample_id": "s0"}', "[]", "\\xff\\xfe"],
    "metrics.json": ["{", "null"],
}
CASES = [(name, text) for name, texts in CORRUPTIONS.items() for text in texts]


@pytest.mark.parametrize(("name", "text"), CASES)
def test_show_and_compare_name_the_corrupt_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str
) -> None:
    out = tmp_path / "runs"
    good, bad = make_run(out, "run-good"), make_run(out, "run-bad")
    assert good.exists()
    if text == "\\xff\\xfe":
        (bad / name).write_bytes(b"\xff\xfe\x00garbage")
    else:
        (bad / name).write_text(text)
    for argv in (["show", "run-bad"], ["compare", "run-good", "run-bad"], ["compare", "run-bad", "run-good"]):
        code = main([*argv, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2, argv
        assert err.startswith("harness: error: ") and str(bad / name) in err and "Traceback" not in err
