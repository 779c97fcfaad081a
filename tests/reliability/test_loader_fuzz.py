"""Corrupt label files (hypothesis: truncated, garbage, bytes flipped, lines dropped or replaced) give a
`DataError` naming the file, never a traceback (issue 9, the suite).

Each task's loader is exercised the way a run does (`resolve_data`, then `folds` for every protocol
the intact fixture supports) on a small valid folder in the official layout: the shipped MUStARD
files, the synthetic writers of the task packages, or links to ../shared/data. Media are linked, not
copied; only label files (JSON, CSV, TXT, XLSX, pickles) are mutated.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core import DataError, HarnessError
from harness.registry import get_task
from tests.conftest import shared_data_path

LABEL_SUFFIXES = {".json", ".csv", ".txt", ".tsv", ".xlsx", ".p", ".pkl", ".lst"}


def _sarcasm(root: Path) -> Path:
    from tasks.sarcasm import bundled, loader

    for name in (loader.ANNOTATIONS_FILE, loader.DERIVED_SPLIT_FILE):
        shutil.copy(bundled.BUNDLED_DIR / name, root / name)
    return root


def _sarcasm_plus_plus(root: Path) -> Path:
    from tests.test_sarcasm_data_errors import write_plus_plus_csv

    write_plus_plus_csv(root, n_scenes=10)
    return root


def _motor(root: Path) -> Path:
    from tasks.motor.fixture import write_fixture

    return write_fixture(root, n_clips=6, video_frames=2)


def _emocap_rafdb(root: Path) -> Path:
    from tasks.emocap.synthetic import write_rafdb

    return write_rafdb(root, n_train=7, n_test=7)


def _emocap_affectnet(root: Path) -> Path:
    from tasks.emocap.synthetic import write_affectnet

    return write_affectnet(root, n_per_class=1)


def _micro_au(dataset: str) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        from tasks.micro_au.synthetic import write_dataset

        return write_dataset(root, dataset, n_subjects=2, clips_per_subject=2)

    return build


def _pad_il(root: Path) -> Path:
    from tasks.pad_il.synthetic import write_all

    return write_all(root)


def _gait_scoliosis(root: Path) -> Path:
    from tasks.gait_deid.synthetic import write_scoliosis1k

    return write_scoliosis1k(root, n_subjects=6, views=("090",), n_frames=3)


def _shared_copy(name: str) -> Callable[[Path], Path]:
    """Label files copied from ../shared/data/<name>, everything else linked."""

    def build(root: Path) -> Path:
        source = shared_data_path(name)  # a skip on a user's machine, a failure in CI
        for path in source.rglob("*"):
            target = root / path.relative_to(source)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif path.suffix.lower() in LABEL_SUFFIXES:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(path)
        return root

    return build


def _immunization(root: Path) -> Path:
    from tasks.immunization.example import write_example_folder

    return write_example_folder(root, n=2, masks=True, prompts_per_image=2)


def _face_anon_celeba(root: Path) -> Path:
    """A CelebA-HQ-style flat folder: images under images/ and CelebA's `identity_CelebA.txt`."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir()
    lines = []
    for i in range(6):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / "images" / name)
        lines.append(f"{name} {100 + i // 2}")
    (root / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    return root


FIXTURES: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "sarcasm": ("sarcasm", _sarcasm),
    "sarcasm++": ("sarcasm", _sarcasm_plus_plus),
    "motor": ("motor", _motor),
    "emocap-rafdb": ("emocap", _emocap_rafdb),
    "emocap-affectnet": ("emocap", _emocap_affectnet),
    "micro_au-casme2": ("micro_au", _micro_au("casme2")),
    "micro_au-samm": ("micro_au", _micro_au("samm")),
    "rppg-roi": ("rppg", _shared_copy("rppg_bias_eval_roi")),
    "pad_il": ("pad_il", _pad_il),
    "gait_deid-scoliosis1k": ("gait_deid", _gait_scoliosis),
    "fdeid-lfw": ("fdeid", _shared_copy("lfw_pairs_protocol")),
    "fdeid-pairs-csv": ("fdeid", _shared_copy("deepface_verification_pairs")),
    "immunization": ("immunization", _immunization),
    "face_anon-identities-csv": ("face_anon", _shared_copy("deepface_verification_pairs")),
    "face_anon-celeba": ("face_anon", _face_anon_celeba),
}


def _load_all(task_name: str, folder: Path, protocols: list[str]) -> None:
    task = get_task(task_name)
    data_dir = task.resolve_data(folder)
    for protocol in protocols:
        folds = task.folds(data_dir, protocol)
        for fold in folds:  # touch every sample, as the runner does
            for sample in (*fold.test, *fold.train):
                assert sample.id is not None


def _intact(task_name: str, folder: Path) -> list[str]:
    task = get_task(task_name)
    data_dir = task.resolve_data(folder)
    ok = []
    for protocol in task.protocols:
        try:
            task.folds(data_dir, protocol)
        except HarnessError:
            continue  # a protocol this layout does not hold
        ok.append(protocol)
    return ok


MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 0.999)),
    st.tuples(st.just("garbage"), st.binary(max_size=300)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 0.999), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("drop_line"), st.floats(0, 0.999)),
    st.tuples(st.just("replace_line"), st.tuples(st.floats(0, 0.999), st.text(max_size=60))),
    st.tuples(st.just("empty"), st.none()),
)


def mutate(data: bytes, mutation: tuple) -> bytes:
    kind, arg = mutation
    if kind == "truncate":
        return data[: int(arg * len(data))]
    if kind == "garbage":
        return arg
    if kind == "flip":
        out = bytearray(data)
        for where, value in arg:
            if out:
                out[int(where * len(out))] = value
        return bytes(out)
    if kind == "empty":
        return b""
    lines = data.split(b"\n")
    i = int((arg if kind == "drop_line" else arg[0]) * len(lines))
    if kind == "drop_line":
        del lines[i]
    else:
        lines[i] = arg[1].encode("utf-8", "surrogatepass")
    return b"\n".join(lines)


@pytest.mark.parametrize("fixture", list(FIXTURES))
def test_corrupt_label_files_raise_data_errors_naming_the_file(fixture: str, tmp_path_factory) -> None:
    task_name, build = FIXTURES[fixture]
    try:
        get_task(task_name)
    except HarnessError as exc:
        pytest.skip(f"task {task_name} not available: {exc}")
    pristine = build(tmp_path_factory.mktemp(fixture))
    protocols = _intact(task_name, pristine)
    assert protocols, f"the {fixture} fixture supports no protocol"
    label_files = sorted(p.relative_to(pristine) for p in pristine.rglob("*")
                         if p.is_file() and not p.is_symlink() and p.suffix.lower() in LABEL_SUFFIXES)
    assert label_files, f"no label files in the {fixture} fixture"

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(which=st.sampled_from(label_files), mutation=MUTATIONS)
    def corrupt_one(which: Path, mutation: tuple) -> None:
        folder = tmp_path_factory.mktemp(f"{fixture}-mut")
        shutil.rmtree(folder)
        shutil.copytree(pristine, folder, symlinks=True)
        target = folder / which
        target.write_bytes(mutate(target.read_bytes(), mutation))
        try:
            _load_all(task_name, folder, protocols)
        except DataError as exc:
            assert target.name in str(exc) or str(folder) in str(exc), (  # the file, or the folder it is in
                f"{fixture}: corrupting {which} ({mutation[0]}) raised a DataError not naming it: {exc}")
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            pytest.fail(f"{fixture}: corrupting {which} ({mutation[0]}) raised {type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    corrupt_one()
