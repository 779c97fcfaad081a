"""`harness doctor`: a pre-flight of the environment, one line per check with a fix hint.

Why: most failed first runs are environmental (an extra not installed, OpenCV 5 without Haar
cascades, no CUDA, a read-only runs folder, a board URL that does not answer, data not where
HARNESS_DATA says, an endpoint that is down). Each check here is cheap, never raises, and says how to
fix what it finds. `FAIL` lines make the command exit non-zero; `WARN` lines are optional parts.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

OK, WARN, FAIL = "OK", "WARN", "FAIL"
DIST = "harness-eval"
CORE_PACKAGES = ("numpy", "scipy", "scikit-learn", "rich", "sqlalchemy", "pydantic", "orjson")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    detail: str
    hint: str = ""

    def line(self) -> str:
        return f"{self.status:<4} {self.name}: {self.detail}" + (f"  -> fix: {self.hint}" if self.hint else "")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    v = sys.version_info
    text = f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v < (3, 11):
        return Check("python", FAIL, text, "use Python >= 3.11")
    return Check("python", OK, text)


def check_packages() -> Check:
    versions = {name: _version(name) for name in (DIST, *CORE_PACKAGES)}
    missing = [n for n, v in versions.items() if v is None]
    text = ", ".join(f"{n} {v}" for n, v in versions.items() if v)
    if missing:
        return Check("packages", FAIL, f"missing {', '.join(missing)}; {text}", 'pip install -e "."')
    return Check("packages", OK, text)


def _extra_requirements() -> dict[str, list[str]]:
    """extra -> distribution names it requires (from the installed package's metadata)."""
    from packaging.requirements import Requirement

    extras: dict[str, list[str]] = {}
    for spec in metadata.requires(DIST) or []:
        req = Requirement(spec)
        if req.marker is None:
            continue
        for extra in metadata.metadata(DIST).get_all("Provides-Extra") or []:
            if req.marker.evaluate({"extra": extra}):
                extras.setdefault(extra, []).append(req.name)
    return extras


def check_extras() -> list[Check]:
    try:
        extras = _extra_requirements()
    except Exception as exc:  # not installed as a distribution (a bare checkout on sys.path)
        return [Check("extras", WARN, f"cannot read the package metadata ({exc})", 'pip install -e ".[all]"')]
    checks = []
    for extra, names in sorted(extras.items()):
        if extra == "all":
            continue
        missing = sorted({n for n in names if n != DIST and _version(n) is None})
        if missing:
            checks.append(Check(f"extra [{extra}]", WARN, f"not installed: {', '.join(missing)}",
                                f'pip install -e ".[{extra}]"'))
        else:
            checks.append(Check(f"extra [{extra}]", OK, "installed"))
    return checks


def check_opencv() -> Check:
    try:
        import cv2
    except ImportError:
        return Check("opencv cascades", WARN, "OpenCV not installed (rPPG face ROI)", 'pip install -e ".[video]"')
    folder = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or "")
    cascade = folder / "haarcascade_frontalface_default.xml"
    if not cascade.is_file():
        return Check("opencv cascades", FAIL, f"OpenCV {cv2.__version__} ships no Haar cascades ({folder})",
                     'pip install "opencv-python-headless>=4.9,<5"')
    return Check("opencv cascades", OK, f"OpenCV {cv2.__version__}, {cascade.name} present")


def check_gpu() -> Check:
    try:
        import torch
    except ImportError:
        return Check("gpu", WARN, "torch not installed (GPU solvers unavailable)", 'pip install -e ".[hf]"')
    if not torch.cuda.is_available():
        return Check("gpu", WARN, f"torch {torch.__version__}: no CUDA device visible (CPU only)",
                     "GPU solvers need an NVIDIA driver and a CUDA build of torch")
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return Check("gpu", OK, f"torch {torch.__version__}, CUDA {torch.version.cuda}: {', '.join(names)}")


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_runs_folder(out_dir: Path) -> Check:
    """The runs folder (and its result cache) can be written."""
    base = _nearest_existing(out_dir)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        return Check("runs folder", FAIL, f"{out_dir} is not writable (nearest existing: {base})",
                     "pass --out DIR on a writable disk")
    cache = out_dir / "cache.sqlite"
    if cache.exists():
        try:
            db = sqlite3.connect(cache, timeout=2)
            try:
                db.execute("BEGIN IMMEDIATE")  # takes the write lock: read-only files and held locks fail here
                db.execute("ROLLBACK")
            finally:
                db.close()
        except sqlite3.Error as exc:
            return Check("runs folder", FAIL, f"result cache {cache} is not writable: {exc}",
                         "check the file's permissions, or whether another process holds it")
    return Check("runs folder", OK, f"{out_dir} writable" + (" (cache present)" if cache.exists() else ""))


def check_board(db_url: str) -> Check:
    from harness.core import HarnessError
    from harness.leaderboard import Leaderboard, masked_url

    if db_url.startswith("sqlite:///"):
        path = Path(db_url.removeprefix("sqlite:///"))
        target = path if path.exists() else _nearest_existing(path.parent)
        if not os.access(target, os.W_OK):
            return Check("leaderboard", FAIL, f"{masked_url(db_url)}: {target} is not writable",
                         "pass --db or HARNESS_DB with a writable location")
        if not path.exists():
            return Check("leaderboard", OK, f"{masked_url(db_url)} (created on the first run)")
    try:
        board = Leaderboard(db_url)
        n = len(board.measured())
    except HarnessError as exc:
        return Check("leaderboard", FAIL, str(exc), "check --db / HARNESS_DB (URL, server, credentials)")
    return Check("leaderboard", OK, f"{masked_url(db_url)}: {n} measured runs")


def check_data(data_root: Path | None) -> list[Check]:
    from harness.core import HarnessError
    from harness.registry import get_task, task_names

    checks = []
    for name in task_names():
        try:
            task = get_task(name)
        except Exception as exc:  # a broken plugin is itself a finding
            checks.append(Check(f"data {name}", FAIL, f"task failed to load: {exc}", "reinstall the plugin"))
            continue
        path = data_root / task.data_folder if data_root is not None and task.data_folder else None
        try:
            found = task.resolve_data(path)
        except HarnessError as exc:
            hint = (f"set HARNESS_DATA to a folder holding {task.data_folder}/, or pass --data"
                    if task.data_folder else "pass --data")
            checks.append(Check(f"data {name}", WARN, str(exc), hint))
        except Exception as exc:
            checks.append(Check(f"data {name}", FAIL, f"{type(exc).__name__}: {exc}", "report this as a bug"))
        else:
            checks.append(Check(f"data {name}", OK, f"found at {found}"))
    return checks


def check_endpoint(base_url: str | None, api_key: str | None, timeout_s: float = 5.0) -> Check:
    if not base_url:
        return Check("endpoint", OK, "no --base-url / OPENAI_BASE_URL given (model solvers not checked)")
    urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
    problems, models = [], []
    for url in urls:
        request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {api_key or 'EMPTY'}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as resp:
                data = json.loads(resp.read())
            models += [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]
        except Exception as exc:
            problems.append(f"{url}: {exc}")
    if problems:
        return Check("endpoint", FAIL, "; ".join(problems),
                     "start the server (e.g. `vllm serve MODEL`) and check --base-url (it ends in /v1)")
    return Check("endpoint", OK, f"{', '.join(urls)} serves {', '.join(models) or 'no models listed'}")


def run_checks(*, out_dir: Path, db_url: str, data_root: Path | None, base_url: str | None,
               api_key: str | None, gpu: bool = True) -> list[Check]:
    """Every check, in the order printed. A check that itself crashes is reported, never raised."""
    steps: Sequence[Callable[[], Check | list[Check]]] = [
        check_python, check_packages, check_extras, check_opencv, *([check_gpu] if gpu else []),
        lambda: check_runs_folder(out_dir), lambda: check_board(db_url), lambda: check_data(data_root),
        lambda: check_endpoint(base_url, api_key),
    ]
    checks: list[Check] = []
    for step in steps:
        try:
            result = step()
        except Exception as exc:
            result = Check(getattr(step, "__name__", "check"), FAIL, f"check crashed: {type(exc).__name__}: {exc}")
        checks.extend(result if isinstance(result, list) else [result])
    return checks
