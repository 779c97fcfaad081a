"""The files of one run: runs/<run_id>/manifest.json, samples.jsonl, metrics.json."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import secrets
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from harness.core import DataError, HarnessError, Record

TRACKED_PACKAGES = (
    "harness-eval", "numpy", "scipy", "scikit-learn", "sqlalchemy", "openai", "langgraph", "torch",
    "transformers", "open_clip_torch", "diffusers", "av", "opencv-python-headless", "ray", "vllm",
)


def _default(obj: Any) -> Any:
    """JSON for what orjson does not convert itself (paths, sets, numpy scalars of odd kinds)."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> str:
    """Compact JSON (orjson: numpy arrays and scalars become lists and numbers; NaN becomes null)."""
    return orjson.dumps(obj, default=_default, option=_OPTS).decode()


def to_jsonable(obj: Any) -> Any:
    """`obj` as plain JSON types; raises TypeError if impossible."""
    return orjson.loads(orjson.dumps(obj, default=_default, option=_OPTS))


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_run_id(task: str, solver: str) -> str:
    # Millisecond stamp: run ids sort in start order even when a cached re-run starts within the same
    # second as the one before it; the random suffix keeps runs started in the same millisecond apart.
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return f"{task}-{solver}-{stamp}-{secrets.token_hex(2)}".replace("/", "_").replace(":", "_")


@functools.cache
def package_versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@functools.cache
def git_commit() -> str | None:
    """The commit of the harness checkout, with "-dirty" when it has local changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
            text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def prediction_dict(r: Record) -> dict[str, Any]:
    """A record without its scores: what the result cache keeps (scores are recomputed every run)."""
    return {
        "sample_id": r.sample_id, "fold": r.fold, "split": r.split, "target": r.target,
        "prediction": r.prediction, "groups": r.groups, "info": r.info, "artifacts": r.artifacts,
        "error": r.error, "latency_s": r.latency_s,
    }


def record_to_dict(r: Record) -> dict[str, Any]:
    """The samples.jsonl fields of a record, scores last ("cached" is added when the file is written)."""
    return {**prediction_dict(r), "scores": r.scores}


def prediction_line(r: Record) -> str:
    return dumps(prediction_dict(r))


def record_line(r: Record) -> str:
    return dumps(record_to_dict(r))


def record_from_line(line: str, cached: bool = False) -> Record:
    record = Record(**orjson.loads(line))
    record.cached = cached
    return record


def write_samples(path: Path, lines: list[tuple[str, bool]]) -> None:
    """Write (JSON line, cached) pairs; each line was serialised once, when its sample finished."""
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w") as f:
        f.writelines(f'{{"cached": {"true" if cached else "false"}, {line[1:]}\n' for line, cached in lines)
    os.replace(tmp, path)


def read_samples(path: Path) -> list[Record]:
    """The records of a samples.jsonl; a broken line is a `DataError` naming the file and line."""
    records = []
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    fields = orjson.loads(line)
                    if not isinstance(fields, dict):
                        raise TypeError(f"a JSON {type(fields).__name__}, not an object")
                    records.append(Record(**fields))
                except (orjson.JSONDecodeError, TypeError) as exc:
                    raise DataError(f"{path}: line {number} is not a sample record: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    return records


def _read_json_object(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg} "
                        "(a corrupt or partly written run folder)") from None
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(content).__name__}")
    missing = [k for k in required if k not in content]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)}")
    return content


def find_run(out_dir: Path, run_id: str) -> Path:
    path = Path(run_id)
    if path.is_dir() and (path / "manifest.json").exists():
        return path
    path = out_dir / run_id
    if (path / "manifest.json").exists():
        return path
    matches = sorted(p for p in out_dir.glob(f"{run_id}*") if (p / "manifest.json").exists())
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise HarnessError(f"run id {run_id!r} is ambiguous in {out_dir}: {', '.join(p.name for p in matches)}")
    raise HarnessError(f"no run {run_id!r} in {out_dir} (use --out to point at another runs folder)")


def load_run(path: Path) -> tuple[dict[str, Any], list[Record], dict[str, Any]]:
    """A run folder's manifest, records and metrics; a corrupt file is a `DataError` naming it."""
    manifest = _read_json_object(path / "manifest.json", ("run_id", "config"))
    if not isinstance(manifest["config"], dict) or not {"task", "protocol"} <= set(manifest["config"]):
        raise DataError(f"{path / 'manifest.json'}: 'config' lacks task/protocol")
    samples = path / "samples.jsonl"
    metrics = path / "metrics.json"
    records = read_samples(samples) if samples.exists() else []
    return manifest, records, (_read_json_object(metrics) if metrics.exists() else {})
