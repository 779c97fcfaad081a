"""vision_models.diffusion: pipelines built from several threads at once.

diffusers resolves pipeline classes through lazy imports that are not thread-safe: two pipelines built
at the same time in two threads failed with "module 'diffusers' has no attribute
StableDiffusionInstructPix2PixPipeline". `load_pipeline` now builds under one process-wide lock, which
`diffusion_editors.load_editor` shares. Checked three ways: in a fresh interpreter (diffusers not yet
imported, the situation of the failure) two threads build two tiny-random pipelines of different kinds;
in this process, an instrumented build counts how many constructions overlap (must be one at a time);
and an editor built while a plain pipeline is being built gets the same cached pipeline object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
REPO = Path(__file__).resolve().parents[1]

_FRESH = r"""
import json, sys, threading
from vision_models import diffusion
assert "diffusers" not in sys.modules, "diffusers imported too early: the test would not exercise the race"
barrier = threading.Barrier(2)
out, errors = {}, []
def build(kind):
    barrier.wait()
    try:
        out[kind] = type(diffusion.load_pipeline(kind, "tiny-random", "cpu")).__name__
    except Exception as exc:
        errors.append(f"{kind}: {type(exc).__name__}: {exc}")
threads = [threading.Thread(target=build, args=(k,)) for k in ("instruct-pix2pix", "inpaint")]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"out": out, "errors": errors}))
"""


def test_two_threads_build_two_pipelines_in_a_fresh_interpreter() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _FRESH], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    assert result["out"] == {"instruct-pix2pix": "StableDiffusionInstructPix2PixPipeline",
                             "inpaint": "StableDiffusionInpaintPipeline"}


def test_constructions_never_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    from vision_models import diffusion

    active, peak, lock = [0], [0], threading.Lock()
    real = diffusion.tiny_components

    def slow_components(kind: str, seed: int = 0):  # widen the window two unserialised builds would share
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.2)
            return real(kind, seed)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(diffusion, "tiny_components", slow_components)
    monkeypatch.setattr(diffusion, "_PIPES", {})
    barrier = threading.Barrier(3)
    pipes: dict[str, object] = {}
    errors: list[str] = []

    def build(kind: str, seed: int) -> None:
        barrier.wait()
        try:
            pipes[f"{kind}:{seed}"] = diffusion.load_pipeline(kind, f"tiny-random:{seed}", "cpu")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(f"{kind}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=build, args=a) for a in (("instruct-pix2pix", 1), ("inpaint", 1),
                                                                 ("sdedit", 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert peak[0] == 1
    assert {k: type(v).__name__ for k, v in pipes.items()} == {
        "instruct-pix2pix:1": "StableDiffusionInstructPix2PixPipeline",
        "inpaint:1": "StableDiffusionInpaintPipeline", "sdedit:1": "StableDiffusionImg2ImgPipeline"}
    # A second request is served from the cache: the same object, nothing rebuilt.
    assert diffusion.load_pipeline("inpaint", "tiny-random:1", "cpu") is pipes["inpaint:1"]


def test_editor_and_pipeline_share_the_build_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    from vision_models import diffusion, diffusion_editors

    assert not hasattr(diffusion_editors, "_BUILD_LOCK"), "one lock for pipeline builds, not two"
    monkeypatch.setattr(diffusion, "_PIPES", {})
    monkeypatch.setattr(diffusion_editors, "_EDITORS", {})
    barrier = threading.Barrier(2)
    got: dict[str, object] = {}

    def editor() -> None:
        barrier.wait()
        got["editor"] = diffusion_editors.load_editor("tiny-random:3", "cpu").pipe

    def plain() -> None:
        barrier.wait()
        got["plain"] = diffusion.load_pipeline("instruct-pix2pix", "tiny-random:3", "cpu")

    threads = [threading.Thread(target=editor), threading.Thread(target=plain)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got["editor"] is got["plain"]
