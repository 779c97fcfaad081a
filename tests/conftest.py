"""Shared fixtures. Data in ../shared/data is required in CI (HARNESS_REQUIRE_DATA=1 turns a
missing folder from a skip into a failure) and optional on a user's machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]

# The toy test tasks are imported as `toy_task` (tests/ is on sys.path) by most tests and as
# `tests.toy_task` by the reliability tests (their subprocesses import it from the repo root). One module
# under both names: two copies would register two `toy` classes, and a test that monkeypatches
# `toy_task.ToyTask` would patch a class the registry no longer holds, depending on collection order.
import toy_task  # noqa: E402

sys.modules.setdefault("tests.toy_task", toy_task)
SHARED_DATA = Path(os.environ.get("HARNESS_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data_path(name: str) -> Path:
    """Path to a folder of ../shared/data; skip (or fail in CI) when it is missing."""
    path = SHARED_DATA / name
    if not path.exists():
        msg = f"shared test data {path} is missing (see ../shared/data/README.md)"
        if os.environ.get("HARNESS_REQUIRE_DATA") == "1":
            pytest.fail(msg + "; HARNESS_REQUIRE_DATA=1 makes this a failure")
        pytest.skip(msg)
    return path


@pytest.fixture
def shared_data():
    return shared_data_path


@pytest.fixture
def toy_data(tmp_path):
    """40 items of the toy task (tests/toy_task.py) in tmp_path/toy."""
    return toy_task.write_items(tmp_path / "toy", 40)


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in gpu_items:
        item.add_marker(skip_gpu)
